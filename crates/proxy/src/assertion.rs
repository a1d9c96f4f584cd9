//! The signed identity assertion (a short-lived JWT) and the JWKS that verifies it.
