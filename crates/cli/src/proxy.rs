//! `sshttp proxy`: the options become a [`ProxyConfig`] and a client; the proxy itself
//! is `sshttp_local_proxy`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use sshttp_local_proxy::{GatewayUrl, LocalProxy, Mode, ProxyConfig, Route};

use crate::fetch::{SshArgs, client_builder};

/// The options of `sshttp proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// How logs are written: text, or one JSON object per line [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<crate::LogFormatArg>,
    /// Listen here [default: 127.0.0.1:8080]. An address other than loopback also needs
    /// --public.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Send requests for these hosts to this gateway (repeatable; the first match
    /// wins). HOSTS is a comma-separated list of names, *.domain (any subdomain) or *
    /// (anything); the requested host is the vhost.
    #[arg(
        long,
        value_name = "HOSTS=sshttp://[user@]gateway[:port]",
        conflicts_with = "to"
    )]
    route: Vec<Route>,
    /// Read listen address and routes from this TOML file (see the README's "Browse
    /// over SSH"); --route rules are tried before its own.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "to")]
    config: Option<PathBuf>,
    /// Reverse proxy: serve this one gateway as a local web server instead of being a
    /// forward proxy.
    #[arg(long, value_name = "sshttp://[user@]gateway[:port]")]
    to: Option<GatewayUrl>,
    /// With --to: the vhost every request names [default: the gateway's host].
    #[arg(long, value_name = "NAME", requires = "to")]
    vhost: Option<String>,
    /// Allow --listen on an address other than loopback. Whoever can reach it can then
    /// act with your SSH keys.
    #[arg(long)]
    public: bool,
    /// Serve at most this many local connections at once [default: 512].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    #[command(flatten)]
    ssh: SshArgs,
}

impl ProxyArgs {
    /// Whether logs are JSON lines.
    pub(crate) fn json_logs(&self) -> bool {
        self.log_format == Some(crate::LogFormatArg::Json)
    }
}

pub(crate) async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let mut config = match (&args.to, &args.config) {
        (Some(gateway), _) => {
            let vhost = args
                .vhost
                .clone()
                .unwrap_or_else(|| gateway.host().to_owned())
                .to_ascii_lowercase();
            ProxyConfig::new(Mode::Reverse {
                gateway: gateway.clone(),
                vhost,
            })
        }
        (None, Some(path)) => ProxyConfig::load(path)?,
        (None, None) => ProxyConfig::new(Mode::Forward(Vec::new())),
    };
    if let Mode::Forward(routes) = &mut config.mode {
        routes.splice(0..0, args.route.iter().cloned());
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.public |= args.public;
    if let Some(max) = args.max_connections {
        config.max_connections = max;
    }
    let client = client_builder(&args.ssh, None)
        .build()
        .context("the SSH client cannot start")?;
    let mode = config.mode.clone();
    let proxy = LocalProxy::bind(config, client)
        .await
        .context("the proxy cannot start")?;
    let addr = proxy.local_addr()?;
    println!("sshttp proxy listening on {addr}");
    match &mode {
        Mode::Reverse { gateway, vhost } => {
            println!("every request goes to {gateway} as vhost {vhost}");
            println!();
            println!("Try it: curl http://{addr}/");
        }
        Mode::Forward(routes) => {
            for route in routes {
                let hosts: Vec<String> = route.hosts.iter().map(ToString::to_string).collect();
                println!("route {} -> {}", hosts.join(", "), route.gateway);
            }
            let example = routes
                .iter()
                .flat_map(|route| &route.hosts)
                .find_map(|pattern| pattern.example())
                .unwrap_or_else(|| "example.com".to_owned());
            println!();
            println!("Try it:");
            println!("  curl -x http://{addr} http://{example}/");
            println!(
                "  chromium --proxy-server=http://{addr} --proxy-bypass-list='<-loopback>' http://{example}/"
            );
        }
    }
    println!("Stop with Ctrl-C.");
    tokio::select! {
        result = proxy.run() => result.context("the proxy stopped")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
