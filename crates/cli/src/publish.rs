//! `sshttp publish`: a local web service published under a name on a gateway (spec
//! §14.14), as `ssh -R NAME:80:HOST:PORT gw` does, but reconnecting when the
//! connection drops and unpublishing on Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use http::Uri;

use crate::fetch::{SshArgs, client_builder};

/// The first pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The options of `sshttp publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The gateway: sshttp://[user@]host[:port]/ (a path is ignored).
    #[arg(value_name = "sshttp://[user@]gateway[:port]")]
    gateway: Uri,
    /// The name to publish: visitors name it as their vhost (`-o SetEnv=HTTP_HOST=NAME`
    /// with ssh, the host of an sshttp:// URL, a route of `sshttp proxy`).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The local service visitors reach: http://HOST:PORT (HTTP/1.1; only the host and
    /// port are used, and it need listen on nothing but loopback).
    #[arg(long, value_name = "http://HOST:PORT")]
    to: Uri,
    #[command(flatten)]
    ssh: SshArgs,
}

/// Publishes until Ctrl-C (or SIGTERM), reconnecting with backoff when the connection
/// drops. A refusal by the gateway ends it: it would refuse again.
pub(crate) async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let to = local_address(&args.to).await?;
    let client = client_builder(&args.ssh, None)
        .build()
        .context("building the SSH client")?;
    let host = args.gateway.host().unwrap_or_default().to_owned();
    let port = args
        .gateway
        .port_u16()
        .map_or(String::new(), |port| format!("-p {port} "));
    let mut backoff = FIRST_BACKOFF;
    let mut stop = std::pin::pin!(shutdown());
    loop {
        let connected = tokio::select! {
            connected = client.connect(args.gateway.clone()) => connected,
            () = &mut stop => return Ok(()),
        };
        let connection = match connected {
            Ok(connection) => connection,
            Err(error) if error.is_connect() || error.is_timeout() => {
                eprintln!(
                    "sshttp publish: cannot reach {}: {error}; retrying in {} s",
                    args.gateway,
                    backoff.as_secs()
                );
                if !back_off(&mut backoff, &mut stop).await {
                    return Ok(());
                }
                continue;
            }
            Err(error) => return Err(error).context(format!("connecting to {}", args.gateway)),
        };
        if let Err(error) = connection.publish(&args.name, to).await {
            if error.is_request() {
                bail!("{error}");
            }
            eprintln!(
                "sshttp publish: the connection dropped while publishing: {error}; retrying in {} s",
                backoff.as_secs()
            );
            if !back_off(&mut backoff, &mut stop).await {
                return Ok(());
            }
            continue;
        }
        backoff = FIRST_BACKOFF;
        let service = args
            .to
            .authority()
            .map_or("", |authority| authority.as_str());
        println!("published {} -> http://{service}", args.name);
        println!(
            "visit: ssh {port}-o SetEnv=HTTP_HOST={} {host} get /",
            args.name
        );
        println!("Stop with Ctrl-C (unpublishes at once).");
        loop {
            tokio::select! {
                () = &mut stop => {
                    let _ = connection.unpublish(&args.name).await;
                    connection.close().await;
                    println!("unpublished {}", args.name);
                    return Ok(());
                }
                () = tokio::time::sleep(Duration::from_millis(250)) => {
                    if connection.is_closed() {
                        break;
                    }
                }
            }
        }
        eprintln!(
            "sshttp publish: the connection to {} dropped; reconnecting",
            args.gateway
        );
    }
}

/// Waits `backoff`, then doubles it (up to [`MAX_BACKOFF`]) for the next time; `false`
/// if `stop` came first.
async fn back_off(backoff: &mut Duration, stop: &mut (impl Future<Output = ()> + Unpin)) -> bool {
    let waited = tokio::select! {
        () = tokio::time::sleep(*backoff) => true,
        () = stop => false,
    };
    *backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    waited
}

/// The address of `--to`: http://HOST:PORT, resolved once.
async fn local_address(to: &Uri) -> anyhow::Result<SocketAddr> {
    if to.scheme_str() != Some("http") {
        bail!("--to {to}: give the local service as http://HOST:PORT");
    }
    let host = to.host().context("--to has no host")?;
    let port = to.port_u16().unwrap_or(80);
    tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("--to {to}: resolving {host}"))?
        .next()
        .with_context(|| format!("--to {to}: {host} has no address"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
