//! Who may use a virtual host: the per-vhost authentication policies.
