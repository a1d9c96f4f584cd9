//! OpenSSH client configuration: the settings sshttp honours, resolved for one host the
//! way ssh(1) resolves them (readconf.c, ssh.c), so `sshttp://alias/` reaches what
//! `ssh alias` reaches.
//!
//! Why not the `ssh2-config` crate (0.9.0): it ignores IdentitiesOnly, IdentityAgent and
//! the known-hosts keywords, keeps one CertificateFile, lets a later value in the same
//! block win, has no `Match`, and expands no %-tokens.
//!
//! Where sshttp differs from OpenSSH, on purpose:
//! - `Match exec`, `localnetwork`, `tagged`, `version`, `command` and `sessiontype` never
//!   match: sshttp runs no commands from configuration files and has no tags or sessions.
//! - Hosts are never canonicalized (no DNS), so `Match canonical` matches only on the final
//!   pass, which, as in OpenSSH with `CanonicalizeHostname no`, runs only when a `Match
//!   final` asks for it.
//! - Files are read once, not per host, so `Include` expands only `%d`, `%u`, `%%`, `~` and
//!   `${VAR}`; `%C`, `%i`, `%j`, `%L` and `%l` are not expanded anywhere. Either is an
//!   error at its line rather than a wrong path. `~user` works only for the local user.
//! - Token errors are reported when the file is read, for every block, where OpenSSH
//!   reports them only for the host being resolved.
//! - Unknown keywords are ignored (sshttp honours a subset), where OpenSSH refuses them.

use std::fmt;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sshttp_ssh::pattern::{self, ListMatch};

/// Largest configuration file read, so a wrong path (a log, a device) cannot exhaust memory.
pub(crate) const MAX_FILE_BYTES: u64 = 1_048_576;
/// How deep `Include` may nest: OpenSSH's `READCONF_MAX_DEPTH`.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 16;
/// Files read for one load, includes counted, so include globs cannot fan out without end.
pub(crate) const MAX_FILES: usize = 256;
/// OpenSSH's `SSH_MAX_IDENTITY_FILES` and `SSH_MAX_CERTIFICATE_FILES`.
const MAX_KEY_FILES: usize = 100;
/// OpenSSH's `SSH_MAX_HOSTS_FILES`, the limit of one known-hosts directive.
const MAX_KNOWN_HOSTS_FILES: usize = 32;
/// The port `%p` stands for when neither the user nor the files name one.
const DEFAULT_PORT: u16 = 22;
/// Where relative `Include` paths of the system file live.
const SYSTEM_DIR: &str = "/etc/ssh";
/// The system-wide file, read after the user's.
const SYSTEM_CONFIG: &str = "/etc/ssh/ssh_config";
/// Port names for `Port ssh`, as getservbyname(3) finds them.
const SERVICES: &str = "/etc/services";

/// The settings sshttp honours, resolved for one host. `None`/empty = not set in any file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostConfig {
    /// HostName with `%h` expanded, lowercased unless it is an address (the name ssh
    /// connects to and looks up in known_hosts).
    pub(crate) host_name: Option<String>,
    /// HostKeyAlias: the name the host key is looked up and recorded under instead.
    pub(crate) host_key_alias: Option<String>,
    /// ProxyJump: the jump hosts, `[user@]host[:port]` each, first to last (`none`
    /// gives none).
    pub(crate) proxy_jump: Vec<String>,
    /// The port asked for explicitly, else Port.
    pub(crate) port: Option<u16>,
    /// The user asked for explicitly, else User with its tokens expanded.
    pub(crate) user: Option<String>,
    /// IdentityFile from every matching block, in order, expanded; `none` entries dropped.
    pub(crate) identity_files: Vec<PathBuf>,
    /// An `IdentityFile none` applied: OpenSSH then tries no default key files (the
    /// listed ones still apply).
    pub(crate) identity_file_none: bool,
    /// IdentitiesOnly.
    pub(crate) identities_only: Option<bool>,
    /// CertificateFile from every matching block, in order, expanded.
    pub(crate) certificate_files: Vec<PathBuf>,
    /// UserKnownHostsFile: the first directive's list, expanded.
    pub(crate) user_known_hosts_files: Vec<PathBuf>,
    /// `UserKnownHostsFile none` applied: OpenSSH reads no user known-hosts file.
    pub(crate) user_known_hosts_none: bool,
    /// GlobalKnownHostsFile: the first directive's list, `~` expanded (OpenSSH expands no
    /// tokens here).
    pub(crate) global_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile none` applied: OpenSSH reads no global known-hosts file.
    pub(crate) global_known_hosts_none: bool,
    /// StrictHostKeyChecking.
    pub(crate) strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// HashKnownHosts.
    pub(crate) hash_known_hosts: Option<bool>,
    /// IdentityAgent.
    pub(crate) identity_agent: Option<IdentityAgent>,
    /// Compression.
    pub(crate) compression: Option<bool>,
    /// ConnectTimeout; `ConnectTimeout 0` (no timeout in OpenSSH) leaves this `None`.
    pub(crate) connect_timeout: Option<Duration>,
}

/// StrictHostKeyChecking, with OpenSSH's spellings folded (`off`/`false` are `No`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictHostKeyChecking {
    /// `yes`, `true`.
    Yes,
    /// `no`, `off`, `false`.
    No,
    /// `accept-new`.
    AcceptNew,
    /// `ask`.
    Ask,
}

/// IdentityAgent: which agent to ask for keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdentityAgent {
    /// `none`, or a `$VAR` naming an unset variable: no agent.
    None,
    /// `SSH_AUTH_SOCK` (or `$SSH_AUTH_SOCK`): the agent the environment names.
    SshAuthSock,
    /// A socket path, or the value of a `$VAR`.
    Path(PathBuf),
}

/// What %-tokens and ~ expand to.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// `%d` and `~`.
    pub(crate) home: PathBuf,
    /// `%u`, `Match localuser`, and `%r` when no user is set.
    pub(crate) local_user: String,
}

/// A configuration error: "path:line: message".
#[derive(Debug)]
pub(crate) struct ConfigError {
    path: PathBuf,
    line: Option<usize>,
    message: String,
    source: Option<io::Error>,
}

impl ConfigError {
    fn at(at: &Location, message: impl Into<String>) -> Self {
        Self {
            path: at.path.to_path_buf(),
            line: Some(at.line),
            message: message.into(),
            source: None,
        }
    }

    fn file(path: &Path, message: impl Into<String>, source: Option<io::Error>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: None,
            message: message.into(),
            source,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}

/// Parsed blocks from one or more files, resolved per host by [`SshConfig::resolve`].
#[derive(Debug)]
pub(crate) struct SshConfig {
    entries: Vec<Entry>,
    /// A `Match final` was seen: resolve makes a second pass, as ssh does.
    wants_final_pass: bool,
    context: Context,
}

impl SshConfig {
    /// ~/.ssh/config then /etc/ssh/ssh_config (each optional: missing = empty).
    pub(crate) fn load_default(context: &Context) -> Result<Self, ConfigError> {
        let user = context.home.join(".ssh").join("config");
        Self::load_files(
            &[
                (user, Origin::User),
                (PathBuf::from(SYSTEM_CONFIG), Origin::System),
            ],
            context,
        )
    }

    /// These files in order (missing = empty; other IO errors and malformed lines are
    /// ConfigError). Each is read as a user file, like `ssh -F`.
    pub(crate) fn load(paths: &[PathBuf], context: &Context) -> Result<Self, ConfigError> {
        let files: Vec<_> = paths
            .iter()
            .map(|path| (path.clone(), Origin::User))
            .collect();
        Self::load_files(&files, context)
    }

    /// Parses text as if read from `source` (a user file: relative includes are under
    /// ~/.ssh).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "part of the interface; the client reads files")
    )]
    pub(crate) fn parse(text: &str, source: &Path, context: &Context) -> Result<Self, ConfigError> {
        let mut loader = Loader::new(context);
        let entries = loader.parse_text(text, Arc::from(source), Origin::User, 0)?;
        Ok(loader.finish(entries))
    }

    fn load_files(files: &[(PathBuf, Origin)], context: &Context) -> Result<Self, ConfigError> {
        let mut loader = Loader::new(context);
        let mut entries = Vec::new();
        for (path, origin) in files {
            let text = match read_file(path) {
                Ok(Some(text)) => text,
                Ok(None) => {
                    tracing::debug!("{}: not found; skipped", path.display());
                    continue;
                }
                Err(error) => return Err(error.into_config_error(path)),
            };
            loader.count_file(path, None)?;
            let parsed = loader.parse_text(&text, Arc::from(path.as_path()), *origin, 0)?;
            // Each file starts with its options applying to every host, as if included.
            entries.push(Entry::Include {
                files: vec![parsed],
            });
        }
        Ok(loader.finish(entries))
    }

    /// Settings for `alias` (the host as the user wrote it). `user` and `port` are what
    /// the user asked for explicitly, if anything (they win over the file and are what
    /// %r/%p expand to; otherwise %r is User from the config or the local user, %p the Port
    /// or 22).
    pub(crate) fn resolve(&self, alias: &str, user: Option<&str>, port: Option<u16>) -> HostConfig {
        let mut state = State {
            user: user.map(UserSetting::Explicit),
            port,
            ..State::default()
        };
        let first = Pass {
            host: alias,
            original_host: alias,
            final_pass: false,
        };
        self.walk(&self.entries, &mut state, &first, &mut true);

        // ssh.c: HostName's %h is the alias; the result is lowercased unless an address.
        let mut host = match state.host_name {
            Some(template) => template.render(&Values::host_only(alias)),
            None => alias.to_owned(),
        };
        if host.parse::<IpAddr>().is_err() {
            host.make_ascii_lowercase();
        }
        if self.wants_final_pass {
            tracing::debug!("ssh_config: final pass for {alias} as {host}");
            state.final_host = Some(host.clone());
            let last = Pass {
                host: &host,
                original_host: alias,
                final_pass: true,
            };
            self.walk(&self.entries, &mut state, &last, &mut true);
        }
        self.finish(&state, alias, host)
    }

    fn walk<'a>(
        &'a self,
        entries: &'a [Entry],
        state: &mut State<'a>,
        pass: &Pass<'_>,
        active: &mut bool,
    ) {
        for entry in entries {
            match entry {
                Entry::Host { patterns, at } => {
                    *active = host_block_matches(patterns, pass.host);
                    if *active {
                        tracing::trace!("{at}: Host block applies to {}", pass.host);
                    }
                }
                Entry::Match { criteria, at } => {
                    *active = self.match_block_matches(criteria, at, state, pass);
                }
                Entry::Include { files } => {
                    // Included files start where the Include stands, and a Host or Match
                    // inside one does not leak past it (readconf.c restores `activep`).
                    if *active {
                        for file in files {
                            self.walk(file, state, pass, &mut true);
                        }
                    }
                }
                Entry::Set { directive, at } => {
                    if *active {
                        state.apply(directive, at);
                    }
                }
            }
        }
    }

    /// readconf.c's match_cfg_line, evaluated against what is resolved so far.
    fn match_block_matches(
        &self,
        criteria: &[Criterion],
        at: &Location,
        state: &State<'_>,
        pass: &Pass<'_>,
    ) -> bool {
        let host = match (&state.final_host, state.host_name) {
            (Some(host), _) if pass.final_pass => host.clone(),
            (_, Some(template)) => template.render(&Values::host_only(pass.host)),
            _ => pass.host.to_owned(),
        };
        let remote_user = match &state.user {
            Some(UserSetting::Explicit(user)) => user,
            Some(UserSetting::Config(value)) => value.raw.as_str(),
            None => self.context.local_user.as_str(),
        };
        let mut result = true;
        for criterion in criteria {
            let matched = match &criterion.kind {
                CriterionKind::All => {
                    if result {
                        result = !criterion.negate;
                    }
                    break;
                }
                CriterionKind::Canonical | CriterionKind::Final => pass.final_pass,
                CriterionKind::Host(patterns) => match_hostname(&host, patterns),
                CriterionKind::OriginalHost(patterns) => {
                    match_hostname(pass.original_host, patterns)
                }
                CriterionKind::User(patterns) => {
                    pattern::match_list(remote_user, patterns, false).is_positive()
                }
                CriterionKind::LocalUser(patterns) => {
                    pattern::match_list(&self.context.local_user, patterns, false).is_positive()
                }
                CriterionKind::NeverRun(name) => {
                    tracing::debug!(
                        "{at}: Match {name} is not evaluated by sshttp; the block does not apply"
                    );
                    result = false;
                    continue;
                }
            };
            if matched == criterion.negate {
                result = false;
            }
        }
        tracing::trace!(
            "{at}: Match {}",
            if result { "applies" } else { "does not apply" }
        );
        result
    }

    fn finish(&self, state: &State<'_>, alias: &str, host: String) -> HostConfig {
        let home = self.context.home.to_string_lossy();
        let port = state.port.unwrap_or(DEFAULT_PORT).to_string();
        let key_alias = state
            .host_key_alias
            .map_or_else(|| alias.to_owned(), str::to_ascii_lowercase);
        let mut values = Values {
            home: &home,
            host: &host,
            key_alias: &key_alias,
            alias,
            port: &port,
            remote_user: "",
            local_user: &self.context.local_user,
        };
        let user = match &state.user {
            Some(UserSetting::Explicit(user)) => Some((*user).to_owned()),
            Some(UserSetting::Config(value)) => Some(value.template.render(&values)),
            None => None,
        };
        let remote_user = user
            .clone()
            .unwrap_or_else(|| self.context.local_user.clone());
        values.remote_user = &remote_user;

        let render_paths = |templates: &[Template]| -> Vec<PathBuf> {
            templates
                .iter()
                .map(|template| PathBuf::from(template.render(&values)))
                .collect()
        };
        let (user_known_hosts_files, user_known_hosts_none) = match state.user_known_hosts {
            Some(KnownHosts::Files(files)) => (render_paths(files), false),
            Some(KnownHosts::None) => (Vec::new(), true),
            None => (Vec::new(), false),
        };
        let (global_known_hosts_files, global_known_hosts_none) = match state.global_known_hosts {
            Some(KnownHosts::Files(files)) => (render_paths(files), false),
            Some(KnownHosts::None) => (Vec::new(), true),
            None => (Vec::new(), false),
        };
        let identity_agent = state.identity_agent.map(|template| {
            let agent = template.render(&values);
            identity_agent(&agent)
        });
        HostConfig {
            host_name: state.host_name.map(|_| host.clone()),
            host_key_alias: state.host_key_alias.map(str::to_ascii_lowercase),
            proxy_jump: state
                .proxy_jump
                .filter(|jump| !jump.eq_ignore_ascii_case("none"))
                .map(|jump| jump.split(',').map(|hop| hop.trim().to_owned()).collect())
                .unwrap_or_default(),
            port: state.port,
            user,
            identity_files: state
                .identity_files
                .iter()
                .filter(|file| !file.raw.eq_ignore_ascii_case("none"))
                .map(|file| PathBuf::from(file.template.render(&values)))
                .collect(),
            identity_file_none: state
                .identity_files
                .iter()
                .any(|file| file.raw.eq_ignore_ascii_case("none")),
            identities_only: state.identities_only,
            certificate_files: state
                .certificate_files
                .iter()
                .map(|file| PathBuf::from(file.template.render(&values)))
                .collect(),
            user_known_hosts_files,
            user_known_hosts_none,
            global_known_hosts_files,
            global_known_hosts_none,
            strict_host_key_checking: state.strict_host_key_checking,
            hash_known_hosts: state.hash_known_hosts,
            identity_agent,
            compression: state.compression,
            connect_timeout: state
                .connect_timeout
                .filter(|seconds| *seconds > 0)
                .map(Duration::from_secs),
        }
    }
}

/// ssh.c's handling of the expanded IdentityAgent value.
fn identity_agent(value: &str) -> IdentityAgent {
    const AUTH_SOCK: &str = "SSH_AUTH_SOCK";
    if value == "none" {
        return IdentityAgent::None;
    }
    if value == AUTH_SOCK {
        return IdentityAgent::SshAuthSock;
    }
    // The legacy `$NAME` form, checked when the file was read.
    match value.strip_prefix('$') {
        Some(AUTH_SOCK) => IdentityAgent::SshAuthSock,
        Some(name) if !name.starts_with('{') => match std::env::var_os(name) {
            Some(path) => IdentityAgent::Path(PathBuf::from(path)),
            None => IdentityAgent::None,
        },
        _ => IdentityAgent::Path(PathBuf::from(value)),
    }
}

/// A file and line, for errors and logs.
#[derive(Debug, Clone)]
struct Location {
    path: Arc<Path>,
    line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Whose file a line came from: it decides where relative includes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    User,
    System,
}

#[derive(Debug)]
enum Entry {
    Host {
        patterns: Vec<HostPattern>,
        at: Location,
    },
    Match {
        criteria: Vec<Criterion>,
        at: Location,
    },
    /// The files one Include matched, each parsed in place.
    Include {
        files: Vec<Vec<Entry>>,
    },
    Set {
        directive: Directive,
        at: Location,
    },
}

#[derive(Debug)]
struct HostPattern {
    negated: bool,
    pattern: String,
}

#[derive(Debug)]
struct Criterion {
    negate: bool,
    kind: CriterionKind,
}

#[derive(Debug)]
enum CriterionKind {
    All,
    Canonical,
    Final,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// exec, localnetwork, tagged, version, command, sessiontype: never true here.
    NeverRun(String),
}

/// One honoured keyword's value, checked when read.
#[derive(Debug)]
enum Directive {
    HostName(Template),
    HostKeyAlias(String),
    ProxyJump(String),
    Port(u16),
    User(UserValue),
    IdentityFile(KeyFile),
    CertificateFile(KeyFile),
    IdentitiesOnly(bool),
    UserKnownHostsFile(KnownHosts),
    GlobalKnownHostsFile(KnownHosts),
    StrictHostKeyChecking(StrictHostKeyChecking),
    HashKnownHosts(bool),
    IdentityAgent(Template),
    Compression(bool),
    /// Seconds; `None` for `none`, which leaves the option unset.
    ConnectTimeout(Option<u64>),
}

#[derive(Debug)]
struct UserValue {
    /// What `Match user` compares: ssh matches the value before expansion.
    raw: String,
    template: Template,
}

#[derive(Debug)]
struct KeyFile {
    /// ssh drops a repeated IdentityFile/CertificateFile by its text and origin.
    raw: String,
    user_file: bool,
    template: Template,
}

#[derive(Debug)]
enum KnownHosts {
    None,
    Files(Vec<Template>),
}

/// The options obtained so far: the first value wins.
#[derive(Default)]
struct State<'a> {
    host_name: Option<&'a Template>,
    /// Set for the final pass: the expanded, lowercased host name.
    final_host: Option<String>,
    host_key_alias: Option<&'a str>,
    proxy_jump: Option<&'a str>,
    port: Option<u16>,
    user: Option<UserSetting<'a>>,
    identity_files: Vec<&'a KeyFile>,
    certificate_files: Vec<&'a KeyFile>,
    identities_only: Option<bool>,
    user_known_hosts: Option<&'a KnownHosts>,
    global_known_hosts: Option<&'a KnownHosts>,
    strict_host_key_checking: Option<StrictHostKeyChecking>,
    hash_known_hosts: Option<bool>,
    identity_agent: Option<&'a Template>,
    compression: Option<bool>,
    connect_timeout: Option<u64>,
}

enum UserSetting<'a> {
    Explicit(&'a str),
    Config(&'a UserValue),
}

impl<'a> State<'a> {
    fn apply(&mut self, directive: &'a Directive, at: &Location) {
        match directive {
            Directive::HostName(template) => {
                if self.final_host.is_none() {
                    self.host_name.get_or_insert(template);
                }
            }
            Directive::HostKeyAlias(alias) => {
                self.host_key_alias.get_or_insert(alias);
            }
            Directive::ProxyJump(jump) => {
                self.proxy_jump.get_or_insert(jump);
            }
            Directive::Port(port) => {
                self.port.get_or_insert(*port);
            }
            Directive::User(value) => {
                self.user.get_or_insert(UserSetting::Config(value));
            }
            Directive::IdentityFile(file) => add_key_file(&mut self.identity_files, file, at),
            Directive::CertificateFile(file) => add_key_file(&mut self.certificate_files, file, at),
            Directive::IdentitiesOnly(value) => {
                self.identities_only.get_or_insert(*value);
            }
            Directive::UserKnownHostsFile(files) => {
                self.user_known_hosts.get_or_insert(files);
            }
            Directive::GlobalKnownHostsFile(files) => {
                self.global_known_hosts.get_or_insert(files);
            }
            Directive::StrictHostKeyChecking(value) => {
                self.strict_host_key_checking.get_or_insert(*value);
            }
            Directive::HashKnownHosts(value) => {
                self.hash_known_hosts.get_or_insert(*value);
            }
            Directive::IdentityAgent(template) => {
                self.identity_agent.get_or_insert(template);
            }
            Directive::Compression(value) => {
                self.compression.get_or_insert(*value);
            }
            Directive::ConnectTimeout(Some(seconds)) => {
                self.connect_timeout.get_or_insert(*seconds);
            }
            Directive::ConnectTimeout(None) => {}
        }
    }
}

fn add_key_file<'a>(files: &mut Vec<&'a KeyFile>, file: &'a KeyFile, at: &Location) {
    if files
        .iter()
        .any(|known| known.raw == file.raw && known.user_file == file.user_file)
    {
        return;
    }
    if files.len() >= MAX_KEY_FILES {
        tracing::warn!(
            "{at}: more than {MAX_KEY_FILES} key files apply; ignoring {}",
            file.raw
        );
        return;
    }
    files.push(file);
}

/// The host names one pass matches against.
struct Pass<'a> {
    /// What Host patterns see: the alias, or on the final pass the resolved name.
    host: &'a str,
    original_host: &'a str,
    final_pass: bool,
}

/// readconf.c's Host handling: a matching negated pattern excludes the block.
fn host_block_matches(patterns: &[HostPattern], host: &str) -> bool {
    ListMatch::from_items(
        patterns
            .iter()
            .map(|p| (p.negated, pattern::matches(host, &p.pattern))),
    )
    .is_positive()
}

/// OpenSSH's match_hostname: host names compare without case.
fn match_hostname(host: &str, list: &str) -> bool {
    pattern::match_list(&host.to_ascii_lowercase(), list, true).is_positive()
}

/// A %-token sshttp expands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `%d`
    Home,
    /// `%h`
    Host,
    /// `%k`
    KeyAlias,
    /// `%n`
    Alias,
    /// `%p`
    Port,
    /// `%r`
    RemoteUser,
    /// `%u`
    LocalUser,
}

impl Token {
    fn from_char(c: char) -> Option<Self> {
        Some(match c {
            'd' => Self::Home,
            'h' => Self::Host,
            'k' => Self::KeyAlias,
            'n' => Self::Alias,
            'p' => Self::Port,
            'r' => Self::RemoteUser,
            'u' => Self::LocalUser,
            _ => return None,
        })
    }
}

/// What a keyword's value may contain, per ssh_config(5) TOKENS and ENVIRONMENT VARIABLES.
#[derive(Debug, Clone, Copy)]
struct Syntax {
    /// `None`: `%` is literal.
    tokens: Option<&'static [Token]>,
    /// `${VAR}`.
    env: bool,
    /// A leading `~`.
    tilde: bool,
    /// How the allowed tokens read in an error.
    allowed: &'static str,
}

const ALL_TOKENS: &[Token] = &[
    Token::Home,
    Token::Host,
    Token::KeyAlias,
    Token::Alias,
    Token::Port,
    Token::RemoteUser,
    Token::LocalUser,
];

/// IdentityFile, CertificateFile, UserKnownHostsFile, IdentityAgent.
const PATH_SYNTAX: Syntax = Syntax {
    tokens: Some(ALL_TOKENS),
    env: true,
    tilde: true,
    allowed: "%%, %d, %h, %k, %n, %p, %r, %u",
};
/// User (OpenSSH 10): all but %r, which would refer to itself.
const USER_SYNTAX: Syntax = Syntax {
    tokens: Some(&[
        Token::Home,
        Token::Host,
        Token::KeyAlias,
        Token::Alias,
        Token::Port,
        Token::LocalUser,
    ]),
    env: true,
    tilde: false,
    allowed: "%%, %d, %h, %k, %n, %p, %u",
};
const HOST_NAME_SYNTAX: Syntax = Syntax {
    tokens: Some(&[Token::Host]),
    env: false,
    tilde: false,
    allowed: "%%, %h",
};
/// GlobalKnownHostsFile: ssh.c only expands `~` here.
const GLOBAL_KNOWN_HOSTS_SYNTAX: Syntax = Syntax {
    tokens: None,
    env: false,
    tilde: true,
    allowed: "",
};
/// Include: files are read once, not per host, so only host-independent tokens.
const INCLUDE_SYNTAX: Syntax = Syntax {
    tokens: Some(&[Token::Home, Token::LocalUser]),
    env: true,
    tilde: false,
    allowed: "%%, %d, %u",
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Token(Token),
}

/// A value with `~` and `${VAR}` already expanded and %-tokens left for resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

#[derive(Debug)]
enum TemplateError {
    Token(char),
    TrailingPercent,
    /// Unset variable: OpenSSH then ignores the setting.
    EnvUnset(String),
    EnvSyntax,
    Tilde(String),
}

impl TemplateError {
    fn message(&self, keyword: &str, value: &str, syntax: Syntax) -> String {
        match self {
            Self::Token(c) => format!(
                "{keyword} {value:?}: %{c} is not a token sshttp expands here (it expands {})",
                syntax.allowed
            ),
            Self::TrailingPercent => format!("{keyword} {value:?}: `%` at the end of the value"),
            Self::EnvUnset(name) => {
                format!("{keyword} {value:?}: environment variable {name} is not set")
            }
            Self::EnvSyntax => format!("{keyword} {value:?}: bad ${{VAR}} expansion"),
            Self::Tilde(user) => {
                format!(
                    "{keyword} {value:?}: sshttp expands ~ only for the local user, not ~{user}"
                )
            }
        }
    }
}

/// What tokens stand for when a template is rendered.
struct Values<'a> {
    home: &'a str,
    host: &'a str,
    key_alias: &'a str,
    alias: &'a str,
    port: &'a str,
    remote_user: &'a str,
    local_user: &'a str,
}

impl<'a> Values<'a> {
    /// For HostName, whose only token is %h.
    fn host_only(host: &'a str) -> Self {
        Self {
            home: "",
            host,
            key_alias: "",
            alias: "",
            port: "",
            remote_user: "",
            local_user: "",
        }
    }
}

impl Template {
    fn parse(raw: &str, syntax: Syntax, context: &Context) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = raw;
        if syntax.tilde
            && let Some((home, path)) = expand_tilde(raw, context)?
        {
            // Home is literal: ssh expands ~ first, but a % in a home directory is no token.
            text.push_str(&home);
            rest = path;
        }
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if syntax.env && c == '$' && chars.peek() == Some(&'{') {
                chars.next();
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed || name.is_empty() {
                    return Err(TemplateError::EnvSyntax);
                }
                match std::env::var_os(&name) {
                    Some(value) => text.push_str(&value.to_string_lossy()),
                    None => return Err(TemplateError::EnvUnset(name)),
                }
                continue;
            }
            let Some(tokens) = syntax.tokens.filter(|_| c == '%') else {
                text.push(c);
                continue;
            };
            match chars.next() {
                None => return Err(TemplateError::TrailingPercent),
                Some('%') => text.push('%'),
                Some(t) => match Token::from_char(t).filter(|token| tokens.contains(token)) {
                    Some(token) => {
                        if !text.is_empty() {
                            pieces.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        pieces.push(Piece::Token(token));
                    }
                    None => return Err(TemplateError::Token(t)),
                },
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self(pieces))
    }

    fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            out.push_str(match piece {
                Piece::Text(text) => text,
                Piece::Token(Token::Home) => values.home,
                Piece::Token(Token::Host) => values.host,
                Piece::Token(Token::KeyAlias) => values.key_alias,
                Piece::Token(Token::Alias) => values.alias,
                Piece::Token(Token::Port) => values.port,
                Piece::Token(Token::RemoteUser) => values.remote_user,
                Piece::Token(Token::LocalUser) => values.local_user,
            });
        }
        out
    }
}

/// misc.c's tilde_expand for `~`, `~/path` and `~localuser/path`: the home directory
/// with a trailing `/`, and the rest of the path. `None` when `raw` has no leading `~`.
fn expand_tilde<'a>(
    raw: &'a str,
    context: &Context,
) -> Result<Option<(String, &'a str)>, TemplateError> {
    let Some(rest) = raw.strip_prefix('~') else {
        return Ok(None);
    };
    let (user, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !user.is_empty() && user != context.local_user {
        return Err(TemplateError::Tilde(user.to_owned()));
    }
    let mut home = context.home.to_string_lossy().into_owned();
    if !home.ends_with('/') {
        home.push('/');
    }
    Ok(Some((home, path.trim_start_matches('/'))))
}

/// Reads one file, bounded by [`MAX_FILE_BYTES`]. `Ok(None)` when it does not exist.
/// Only a regular file is read: a device or a FIFO (`Include /dev/tty`, found by the
/// ssh_config fuzz target) would block the client forever.
fn read_file(path: &Path) -> Result<Option<String>, ReadError> {
    // Checked before opening too: opening a FIFO blocks until a writer comes.
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => return Err(ReadError::NotRegular),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ReadError::Io(error)),
    }
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ReadError::Io(error)),
    };
    if !file.metadata().map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_FILE_BYTES) {
        return Err(ReadError::TooLarge);
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[derive(Debug)]
enum ReadError {
    Io(io::Error),
    TooLarge,
    NotRegular,
}

impl ReadError {
    fn into_config_error(self, path: &Path) -> ConfigError {
        match self {
            Self::Io(error) => {
                ConfigError::file(path, format!("cannot read: {error}"), Some(error))
            }
            Self::TooLarge => {
                ConfigError::file(path, format!("larger than {MAX_FILE_BYTES} bytes"), None)
            }
            Self::NotRegular => ConfigError::file(path, "not a regular file".to_owned(), None),
        }
    }
}

/// Parses files and their includes, counting what it reads.
struct Loader<'a> {
    context: &'a Context,
    files_read: usize,
    wants_final_pass: bool,
}

impl<'a> Loader<'a> {
    fn new(context: &'a Context) -> Self {
        Self {
            context,
            files_read: 0,
            wants_final_pass: false,
        }
    }

    fn finish(self, entries: Vec<Entry>) -> SshConfig {
        SshConfig {
            entries,
            wants_final_pass: self.wants_final_pass,
            context: self.context.clone(),
        }
    }

    fn count_file(&mut self, path: &Path, at: Option<&Location>) -> Result<(), ConfigError> {
        self.files_read = self.files_read.saturating_add(1);
        if self.files_read <= MAX_FILES {
            return Ok(());
        }
        let message = format!(
            "more than {MAX_FILES} configuration files to read ({})",
            path.display()
        );
        Err(match at {
            Some(at) => ConfigError::at(at, message),
            None => ConfigError::file(path, message, None),
        })
    }

    fn parse_text(
        &mut self,
        text: &str,
        path: Arc<Path>,
        origin: Origin,
        depth: usize,
    ) -> Result<Vec<Entry>, ConfigError> {
        let mut entries = Vec::new();
        for (index, line) in text.split('\n').enumerate() {
            let at = Location {
                path: Arc::clone(&path),
                line: index.saturating_add(1),
            };
            let Some((keyword, args)) =
                split_line(line).map_err(|message| ConfigError::at(&at, message))?
            else {
                continue;
            };
            if let Some(entry) = self.parse_directive(&keyword, args, at, origin, depth)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    fn parse_directive(
        &mut self,
        keyword: &str,
        args: Vec<String>,
        at: Location,
        origin: Origin,
        depth: usize,
    ) -> Result<Option<Entry>, ConfigError> {
        let name = keyword.to_ascii_lowercase();
        let context = self.context;
        let directive = match name.as_str() {
            "host" => return parse_host(keyword, args, at).map(Some),
            "match" => {
                let criteria = parse_match(args, &at)?;
                if criteria.iter().any(|criterion| {
                    matches!(criterion.kind, CriterionKind::Final) && !criterion.negate
                }) {
                    self.wants_final_pass = true;
                }
                return Ok(Some(Entry::Match { criteria, at }));
            }
            "include" => return self.include(keyword, args, at, origin, depth).map(Some),
            "hostname" => {
                let value = single(keyword, args, &at)?;
                Directive::HostName(template(keyword, &value, HOST_NAME_SYNTAX, context, &at)?)
            }
            "hostkeyalias" => Directive::HostKeyAlias(single(keyword, args, &at)?),
            "proxyjump" => Directive::ProxyJump(single(keyword, args, &at)?),
            "port" => {
                let value = single(keyword, args, &at)?;
                match parse_port(&value) {
                    Some(port) => Directive::Port(port),
                    None => {
                        return Err(ConfigError::at(
                            &at,
                            format!("bad port for {keyword}: {value:?}"),
                        ));
                    }
                }
            }
            "user" => {
                let raw = single(keyword, args, &at)?;
                match Template::parse(&raw, USER_SYNTAX, context) {
                    Ok(template) => Directive::User(UserValue { raw, template }),
                    Err(error) => return ignore_if_unset(error, keyword, &raw, USER_SYNTAX, &at),
                }
            }
            "identityfile" | "identityfile2" | "certificatefile" => {
                let raw = single(keyword, args, &at)?;
                let template = match Template::parse(&raw, PATH_SYNTAX, context) {
                    Ok(template) => template,
                    Err(error) => return ignore_if_unset(error, keyword, &raw, PATH_SYNTAX, &at),
                };
                let file = KeyFile {
                    raw,
                    user_file: origin == Origin::User,
                    template,
                };
                if name == "certificatefile" {
                    Directive::CertificateFile(file)
                } else {
                    Directive::IdentityFile(file)
                }
            }
            "identitiesonly" => Directive::IdentitiesOnly(flag(keyword, args, &at)?),
            "hashknownhosts" => Directive::HashKnownHosts(flag(keyword, args, &at)?),
            "compression" => {
                let value = single(keyword, args, &at)?;
                // readconf.c's multistate_compression knows only these two.
                match value.to_ascii_lowercase().as_str() {
                    "yes" => Directive::Compression(true),
                    "no" => Directive::Compression(false),
                    _ => return Err(bad_value(keyword, &value, "yes or no", &at)),
                }
            }
            "stricthostkeychecking" => {
                let value = single(keyword, args, &at)?;
                Directive::StrictHostKeyChecking(match value.to_ascii_lowercase().as_str() {
                    "yes" | "true" => StrictHostKeyChecking::Yes,
                    "no" | "false" | "off" => StrictHostKeyChecking::No,
                    "accept-new" => StrictHostKeyChecking::AcceptNew,
                    "ask" => StrictHostKeyChecking::Ask,
                    _ => {
                        return Err(bad_value(
                            keyword,
                            &value,
                            "yes, no, off, accept-new or ask",
                            &at,
                        ));
                    }
                })
            }
            "userknownhostsfile" => Directive::UserKnownHostsFile(known_hosts(
                keyword,
                args,
                PATH_SYNTAX,
                context,
                &at,
            )?),
            "globalknownhostsfile" => Directive::GlobalKnownHostsFile(known_hosts(
                keyword,
                args,
                GLOBAL_KNOWN_HOSTS_SYNTAX,
                context,
                &at,
            )?),
            "identityagent" => {
                let value = single(keyword, args, &at)?;
                if let Some(name) = value.strip_prefix('$')
                    && !name.starts_with('{')
                    && !valid_env_name(name)
                {
                    return Err(ConfigError::at(
                        &at,
                        format!("{keyword}: invalid environment name {value:?}"),
                    ));
                }
                // readconf.c refuses an unset ${VAR} here, unlike in the file keywords.
                Directive::IdentityAgent(template(keyword, &value, PATH_SYNTAX, context, &at)?)
            }
            "connecttimeout" => {
                let value = single(keyword, args, &at)?;
                if value == "none" {
                    Directive::ConnectTimeout(None)
                } else {
                    match parse_time(&value) {
                        Some(seconds) => Directive::ConnectTimeout(Some(seconds)),
                        None => {
                            return Err(bad_value(
                                keyword,
                                &value,
                                "a time such as 10, 30s or 1m",
                                &at,
                            ));
                        }
                    }
                }
            }
            _ => {
                tracing::trace!("{at}: {keyword} is not honoured by sshttp; ignored");
                return Ok(None);
            }
        };
        Ok(Some(Entry::Set { directive, at }))
    }

    fn include(
        &mut self,
        keyword: &str,
        args: Vec<String>,
        at: Location,
        origin: Origin,
        depth: usize,
    ) -> Result<Entry, ConfigError> {
        let mut files = Vec::new();
        for arg in args {
            if arg.is_empty() {
                return Err(ConfigError::at(&at, format!("{keyword}: empty argument")));
            }
            let template = match Template::parse(&arg, INCLUDE_SYNTAX, self.context) {
                Ok(template) => template,
                Err(TemplateError::EnvUnset(name)) => {
                    // readconf.c logs and goes on with the next argument.
                    tracing::warn!(
                        "{at}: {keyword} {arg:?}: environment variable {name} is not set; skipped"
                    );
                    continue;
                }
                Err(error) => {
                    return Err(ConfigError::at(
                        &at,
                        error.message(keyword, &arg, INCLUDE_SYNTAX),
                    ));
                }
            };
            let home = self.context.home.to_string_lossy();
            let local_user = &self.context.local_user;
            let values = Values {
                home: &home,
                local_user,
                ..Values::host_only("")
            };
            let expanded = template.render(&values);
            let pattern = if expanded.starts_with('~') {
                if origin == Origin::System {
                    return Err(ConfigError::at(
                        &at,
                        format!("{keyword}: bad include path {expanded:?} (~ in a system file)"),
                    ));
                }
                match expand_tilde(&expanded, self.context) {
                    Ok(Some((home, path))) => format!("{home}{path}"),
                    Ok(None) => expanded,
                    Err(error) => {
                        return Err(ConfigError::at(
                            &at,
                            error.message(keyword, &arg, INCLUDE_SYNTAX),
                        ));
                    }
                }
            } else if Path::new(&expanded).is_absolute() {
                expanded
            } else {
                let dir = match origin {
                    Origin::User => self.context.home.join(".ssh"),
                    Origin::System => PathBuf::from(SYSTEM_DIR),
                };
                format!("{}/{expanded}", dir.display())
            };
            for path in glob_sorted(&pattern)
                .map_err(|message| ConfigError::at(&at, format!("{keyword} {arg:?}: {message}")))?
            {
                let next = depth.saturating_add(1);
                if next > MAX_INCLUDE_DEPTH {
                    return Err(ConfigError::at(
                        &at,
                        format!(
                            "{keyword}: includes nested more than {MAX_INCLUDE_DEPTH} deep ({})",
                            path.display()
                        ),
                    ));
                }
                let text = match read_file(&path) {
                    Ok(Some(text)) => text,
                    Ok(None) => continue,
                    Err(ReadError::Io(error)) => {
                        return Err(ConfigError {
                            message: format!("{keyword}: cannot read {}: {error}", path.display()),
                            source: Some(error),
                            ..ConfigError::at(&at, "")
                        });
                    }
                    Err(ReadError::TooLarge) => {
                        return Err(ConfigError::at(
                            &at,
                            format!(
                                "{keyword}: {} is larger than {MAX_FILE_BYTES} bytes",
                                path.display()
                            ),
                        ));
                    }
                    Err(ReadError::NotRegular) => {
                        return Err(ConfigError::at(
                            &at,
                            format!("{keyword}: {} is not a regular file", path.display()),
                        ));
                    }
                };
                self.count_file(&path, Some(&at))?;
                tracing::trace!("{at}: including {} at depth {next}", path.display());
                files.push(self.parse_text(&text, Arc::from(path.as_path()), origin, next)?);
            }
        }
        Ok(Entry::Include { files })
    }
}

/// glob(3) as readconf.c calls it: sorted, `*` not crossing `/` nor matching a leading dot.
fn glob_sorted(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    // glob(3) has no recursive `**`: it is `*`. Collapsing runs keeps that meaning and
    // keeps the crate from walking whole trees.
    let mut single_stars = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if !(c == '*' && single_stars.ends_with('*')) {
            single_stars.push(c);
        }
    }
    let paths = glob::glob_with(&single_stars, options).map_err(|error| error.to_string())?;
    let mut found: Vec<PathBuf> = paths
        .filter_map(|path| match path {
            Ok(path) => Some(path),
            Err(error) => {
                // glob(3) without GLOB_ERR skips directories it cannot read.
                tracing::debug!("include glob: {error}");
                None
            }
        })
        .collect();
    found.sort();
    if found.is_empty() {
        tracing::debug!("include {pattern} matched no files");
    }
    Ok(found)
}

fn template(
    keyword: &str,
    value: &str,
    syntax: Syntax,
    context: &Context,
    at: &Location,
) -> Result<Template, ConfigError> {
    Template::parse(value, syntax, context)
        .map_err(|error| ConfigError::at(at, error.message(keyword, value, syntax)))
}

/// ssh_config(5): a value naming an unset environment variable is ignored.
fn ignore_if_unset(
    error: TemplateError,
    keyword: &str,
    value: &str,
    syntax: Syntax,
    at: &Location,
) -> Result<Option<Entry>, ConfigError> {
    let message = error.message(keyword, value, syntax);
    if matches!(error, TemplateError::EnvUnset(_)) {
        tracing::warn!("{at}: {message}; ignored");
        return Ok(None);
    }
    Err(ConfigError::at(at, message))
}

fn bad_value(keyword: &str, value: &str, expected: &str, at: &Location) -> ConfigError {
    ConfigError::at(
        at,
        format!("bad value for {keyword}: {value:?} (expected {expected})"),
    )
}

/// The one argument of a single-valued keyword.
fn single(keyword: &str, args: Vec<String>, at: &Location) -> Result<String, ConfigError> {
    let mut args = args.into_iter();
    let value = args.next().filter(|value| !value.is_empty());
    let Some(value) = value else {
        return Err(ConfigError::at(at, format!("{keyword}: missing argument")));
    };
    if args.next().is_some() {
        return Err(ConfigError::at(
            at,
            format!("{keyword}: extra arguments at end of line"),
        ));
    }
    Ok(value)
}

/// readconf.c's multistate_flag: yes, no, true, false.
fn flag(keyword: &str, args: Vec<String>, at: &Location) -> Result<bool, ConfigError> {
    let value = single(keyword, args, at)?;
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(bad_value(keyword, &value, "yes or no", at)),
    }
}

fn known_hosts(
    keyword: &str,
    args: Vec<String>,
    syntax: Syntax,
    context: &Context,
    at: &Location,
) -> Result<KnownHosts, ConfigError> {
    if args.is_empty() {
        return Err(ConfigError::at(at, format!("{keyword}: missing argument")));
    }
    if args.len() > MAX_KNOWN_HOSTS_FILES {
        return Err(ConfigError::at(
            at,
            format!("{keyword}: more than {MAX_KNOWN_HOSTS_FILES} files"),
        ));
    }
    if args.iter().any(|arg| arg.eq_ignore_ascii_case("none")) {
        if args.len() > 1 {
            return Err(ConfigError::at(
                at,
                format!("{keyword}: \"none\" must appear alone"),
            ));
        }
        return Ok(KnownHosts::None);
    }
    let mut files = Vec::new();
    for arg in &args {
        if arg.is_empty() {
            return Err(ConfigError::at(at, format!("{keyword}: empty argument")));
        }
        files.push(template(keyword, arg, syntax, context, at)?);
    }
    Ok(KnownHosts::Files(files))
}

fn parse_host(keyword: &str, args: Vec<String>, at: Location) -> Result<Entry, ConfigError> {
    let mut patterns = Vec::new();
    for arg in args {
        if arg.is_empty() {
            return Err(ConfigError::at(&at, format!("{keyword}: empty argument")));
        }
        patterns.push(match arg.strip_prefix('!') {
            Some(pattern) => HostPattern {
                negated: true,
                pattern: pattern.to_owned(),
            },
            None => HostPattern {
                negated: false,
                pattern: arg,
            },
        });
    }
    Ok(Entry::Host { patterns, at })
}

/// readconf.c's match_cfg_line, the syntax half.
fn parse_match(args: Vec<String>, at: &Location) -> Result<Vec<Criterion>, ConfigError> {
    const WITH_EQUALS: &[&str] = &[
        "host",
        "originalhost",
        "user",
        "localuser",
        "localnetwork",
        "version",
        "tagged",
        "command",
        "exec",
    ];
    let mut criteria = Vec::new();
    let mut attributes = 0_usize;
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg.starts_with('#') {
            break;
        }
        let (negate, attribute) = match arg.strip_prefix('!') {
            Some(attribute) => (true, attribute),
            None => (false, arg.as_str()),
        };
        let lower = attribute.to_ascii_lowercase();
        if lower == "all" {
            let more = args
                .peek()
                .is_some_and(|next| !next.is_empty() && !next.starts_with('#'));
            if attributes > 1 || more {
                return Err(ConfigError::at(
                    at,
                    format!("Match: '{arg}' cannot be combined with other attributes"),
                ));
            }
            criteria.push(Criterion {
                negate,
                kind: CriterionKind::All,
            });
            return Ok(criteria);
        }
        attributes = attributes.saturating_add(1);
        if lower == "canonical" || lower == "final" {
            let kind = if lower == "final" {
                CriterionKind::Final
            } else {
                CriterionKind::Canonical
            };
            criteria.push(Criterion { negate, kind });
            continue;
        }
        let equals = attribute
            .split_once('=')
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(name, _)| WITH_EQUALS.contains(&name.as_str()));
        let (name, value) = match equals {
            Some((name, value)) => (name, value.to_owned()),
            None => match args.next() {
                Some(value) => (lower, value),
                None => {
                    return Err(ConfigError::at(
                        at,
                        format!("Match: missing argument for '{arg}'"),
                    ));
                }
            },
        };
        let empty_allowed = name == "tagged" || name == "command";
        if (value.is_empty() && !empty_allowed) || value.starts_with('#') {
            return Err(ConfigError::at(
                at,
                format!("Match: missing criteria for '{name}'"),
            ));
        }
        let kind = match name.as_str() {
            "host" => CriterionKind::Host(value),
            "originalhost" => CriterionKind::OriginalHost(value),
            "user" => CriterionKind::User(value),
            "localuser" => CriterionKind::LocalUser(value),
            "exec" | "localnetwork" | "tagged" | "version" | "command" | "sessiontype" => {
                CriterionKind::NeverRun(name)
            }
            _ => {
                return Err(ConfigError::at(
                    at,
                    format!("Match: unsupported attribute '{attribute}'"),
                ));
            }
        };
        criteria.push(Criterion { negate, kind });
    }
    if attributes == 0 {
        return Err(ConfigError::at(
            at,
            "Match: one or more attributes required",
        ));
    }
    Ok(criteria)
}

/// Port: a number from 1 to 65535, or a TCP service name (a2port).
fn parse_port(value: &str) -> Option<u16> {
    if value.bytes().all(|byte| byte.is_ascii_digit()) {
        return value.parse::<u16>().ok().filter(|port| *port > 0);
    }
    let services = read_file(Path::new(SERVICES)).ok().flatten()?;
    services.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let name = fields.next()?;
        let (port, protocol) = fields.next()?.split_once('/')?;
        let named = name == value || fields.any(|alias| alias == value);
        (named && protocol == "tcp")
            .then(|| port.parse::<u16>().ok())
            .flatten()
            .filter(|port| *port > 0)
    })
}

/// misc.c's convtime: `90`, `1m30s`, `1.5` (fractions only for seconds), truncated to
/// whole seconds and bounded like OpenSSH's int.
fn parse_time(value: &str) -> Option<u64> {
    const UNITS: &[(char, u64)] = &[
        ('s', 1),
        ('m', 60),
        ('h', 3_600),
        ('d', 86_400),
        ('w', 604_800),
    ];
    if value.is_empty() {
        return None;
    }
    let mut total_ms: u64 = 0;
    let mut seen_seconds = false;
    let mut rest = value;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at_checked(end)?;
        let mut tail_chars = tail.chars();
        let unit = tail_chars.next();
        rest = tail_chars.as_str();
        let multiplier = match unit {
            None => 1,
            Some(unit) => UNITS
                .iter()
                .find(|(name, _)| unit.eq_ignore_ascii_case(name))
                .map(|(_, seconds)| *seconds)?,
        };
        if multiplier == 1 {
            if seen_seconds {
                return None;
            }
            seen_seconds = true;
        }
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if number.contains('.')
            && (multiplier != 1 || fraction.is_empty() || fraction.contains('.'))
        {
            return None;
        }
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let whole_ms = if whole.is_empty() {
            0
        } else {
            whole.parse::<u64>().ok()?.checked_mul(1_000)?
        };
        // Milliseconds are enough: the result is truncated to seconds anyway.
        let fraction_ms = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(3)
            .collect::<String>()
            .parse::<u64>()
            .ok()?;
        let ms = whole_ms.checked_add(fraction_ms)?.checked_mul(multiplier)?;
        total_ms = total_ms.checked_add(ms)?;
    }
    let seconds = total_ms.checked_div(1_000)?;
    (seconds <= u64::from(i32::MAX.unsigned_abs())).then_some(seconds)
}

/// misc.c's valid_env_name.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Splits a line into its keyword and arguments as readconf.c does: `Keyword value`,
/// `Keyword=value`, quotes, backslash escapes, `#` comments. `None` for blank and comment
/// lines.
fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    const WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];
    let line = line.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    let line = line.trim_start_matches(WHITESPACE);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find([' ', '\t', '\r', '\n', '='])
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at_checked(end).ok_or("malformed line")?;
    if keyword.is_empty() {
        return Err("line has no keyword".to_owned());
    }
    // One `=` may separate keyword and value, with whitespace either side.
    let rest = rest.trim_start_matches(WHITESPACE);
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    let rest = rest.trim_start_matches(WHITESPACE);
    if rest.is_empty() {
        return Err(format!("no argument after keyword {keyword:?}"));
    }
    let args = split_args(rest).ok_or("invalid quotes")?;
    Ok(Some((keyword.to_owned(), args)))
}

/// misc.c's argv_split with comments: `None` on an unterminated quote.
fn split_args(text: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        match chars.peek() {
            None | Some('#') => return Some(args),
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => match chars.peek() {
                    Some(&next)
                        if matches!(next, '\'' | '"' | '\\')
                            || (quote.is_none() && next == ' ') =>
                    {
                        arg.push(next);
                        chars.next();
                    }
                    _ => arg.push('\\'),
                },
                (' ' | '\t', None) => break,
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(open)) if c == open => quote = None,
                (c, _) => arg.push(c),
            }
        }
        if quote.is_some() {
            return None;
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn context() -> Context {
        Context {
            home: PathBuf::from("/home/alice"),
            local_user: "alice".to_owned(),
        }
    }

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse(text, Path::new("/test/config"), &context()).expect("parses")
    }

    fn parse_err(text: &str) -> String {
        SshConfig::parse(text, Path::new("/test/config"), &context())
            .expect_err("is refused")
            .to_string()
    }

    fn resolve(text: &str, alias: &str) -> HostConfig {
        parse(text).resolve(alias, None, None)
    }

    fn paths(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn first_obtained_value_wins() {
        let config = resolve(
            "Host web\n  Port 2222\n  User first\n  HostName one.example\n  Port 3333\n\
             Host *\n  User second\n  HostName two.example\n  IdentitiesOnly yes\n  IdentitiesOnly no\n\
             \x20 Compression yes\n  ConnectTimeout 5\n  StrictHostKeyChecking accept-new\n\
             \x20 StrictHostKeyChecking yes\n  HashKnownHosts no\n",
            "web",
        );
        assert_eq!(config.port, Some(2222));
        assert_eq!(config.user.as_deref(), Some("first"));
        assert_eq!(config.host_name.as_deref(), Some("one.example"));
        assert_eq!(config.identities_only, Some(true));
        assert_eq!(config.compression, Some(true));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            config.strict_host_key_checking,
            Some(StrictHostKeyChecking::AcceptNew)
        );
        assert_eq!(config.hash_known_hosts, Some(false));
    }

    #[test]
    fn unset_settings_stay_empty() {
        assert_eq!(
            resolve("Host other\n  Port 1\n", "web"),
            HostConfig::default()
        );
        assert_eq!(resolve("", "web"), HostConfig::default());
    }

    #[test]
    fn identity_and_certificate_files_accumulate_across_blocks() {
        let config = resolve(
            "Host web\n  IdentityFile /k/a\n  CertificateFile /k/a-cert.pub\n  IdentityFile /k/b\n\
             Host w*\n  IdentityFile /k/c\n  IdentityFile /k/a\n  CertificateFile /k/c-cert.pub\n\
             Host other\n  IdentityFile /k/never\n",
            "web",
        );
        // A repeated file is dropped, as readconf.c's add_identity_file does.
        assert_eq!(config.identity_files, paths(&["/k/a", "/k/b", "/k/c"]));
        assert_eq!(
            config.certificate_files,
            paths(&["/k/a-cert.pub", "/k/c-cert.pub"])
        );
        assert!(!config.identity_file_none);
    }

    #[test]
    fn identity_file_none_suppresses_defaults_but_keeps_listed_files() {
        let only_none = resolve("Host *\n  IdentityFile none\n", "web");
        assert!(only_none.identity_files.is_empty());
        assert!(only_none.identity_file_none);

        // ssh(1) skips the `none` entry and still loads the others.
        let mixed = resolve(
            "Host web\n  IdentityFile /k/a\n  IdentityFile NONE\nHost *\n  IdentityFile /k/b\n",
            "web",
        );
        assert_eq!(mixed.identity_files, paths(&["/k/a", "/k/b"]));
        assert!(mixed.identity_file_none);
    }

    #[test]
    fn host_patterns_wildcards_and_negation() {
        let cases: &[(&str, &str, bool)] = &[
            ("web", "web", true),
            ("web", "Web", false), // Host compares case-sensitively, like match_pattern
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "example.com", false),
            ("w?b", "wxb", true),
            ("w?b", "wb", false),
            ("*", "anything", true),
            ("a* !ab*", "abc", false),
            ("!ab* a*", "abc", false),
            ("a* !ab*", "acd", true),
            ("!web", "web", false),
            ("!web", "other", false), // a negation alone matches nothing
            ("x y web", "web", true),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
        ];
        for (patterns, alias, applies) in cases {
            let config = resolve(&format!("Host {patterns}\n  Port 2000\n"), alias);
            assert_eq!(
                config.port.is_some(),
                *applies,
                "Host {patterns} for {alias}"
            );
        }
    }

    #[test]
    fn match_host_sees_host_name_and_originalhost_the_alias() {
        let text = "Host web\n  HostName Web.%h.Example.COM\n\
                    Match host web.web.example.com\n  Port 2001\n\
                    Match host web\n  User wrong\n\
                    Match originalhost web\n  IdentitiesOnly yes\n\
                    Match host *.example.com !host web.*\n  Compression yes\n";
        let config = resolve(text, "web");
        assert_eq!(config.host_name.as_deref(), Some("web.web.example.com"));
        assert_eq!(config.port, Some(2001));
        assert_eq!(config.user, None);
        assert_eq!(config.identities_only, Some(true));
        assert_eq!(config.compression, None);

        // Without a HostName, Match host sees the alias.
        let bare = resolve("Match host WEB\n  Port 2002\n", "web");
        assert_eq!(bare.port, Some(2002));
    }

    #[test]
    fn match_user_and_localuser() {
        let text = "Host web\n  User bob\nMatch user bob localuser alice\n  Port 2003\n\
                    Match user alice\n  Compression yes\n";
        let config = resolve(text, "web");
        assert_eq!(config.port, Some(2003));
        assert_eq!(config.compression, None);
        // An explicit user is what `Match user` sees.
        let explicit = parse(text).resolve("web", Some("alice"), None);
        assert_eq!((explicit.port, explicit.compression), (None, Some(true)));
    }

    #[test]
    fn match_all_and_negated_criteria() {
        assert_eq!(resolve("Match all\n  Port 1\n", "x").port, Some(1));
        assert_eq!(resolve("Match !all\n  Port 1\n", "x").port, None);
        assert_eq!(resolve("Match !host y\n  Port 1\n", "x").port, Some(1));
        assert_eq!(resolve("Match canonical\n  Port 1\n", "x").port, None);
        assert_eq!(resolve("Match !canonical\n  Port 1\n", "x").port, Some(1));
        assert_eq!(
            resolve("Match host=x user=alice\n  Port 1\n", "x").port,
            Some(1)
        );
    }

    #[test]
    fn match_final_reparses_with_the_resolved_host_name() {
        let text = "Host gw\n  HostName Real.%h.example\n\
                    Match final host real.gw.example\n  Port 1111\n\
                    Match !final\n  User early\n\
                    Host real.gw.example\n  Compression yes\n";
        let config = resolve(text, "gw");
        assert_eq!(config.port, Some(1111));
        assert_eq!(config.user.as_deref(), Some("early"));
        // On the final pass Host patterns see the resolved name, as in ssh(1).
        assert_eq!(config.compression, Some(true));
    }

    #[test]
    fn match_exec_never_runs_and_does_not_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let text = format!(
            "Match exec \"touch {m}\"\n  Port 1\nMatch !exec \"touch {m}\"\n  User x\n\
             Match localnetwork 10.0.0.0/8\n  Compression yes\nMatch tagged t\n  HashKnownHosts yes\n",
            m = marker.display()
        );
        let config = resolve(&text, "web");
        assert!(!marker.exists(), "Match exec ran a command");
        assert_eq!(config, HostConfig::default());
    }

    #[test]
    fn match_syntax_errors() {
        let cases = [
            ("Match\n", "no argument after keyword"),
            ("Match host\n", "missing argument for 'host'"),
            ("Match frobnicate x\n", "unsupported attribute 'frobnicate'"),
            ("Match host a user b all\n", "cannot be combined"),
            ("Match all host a\n", "cannot be combined"),
            ("Match host \"\"\n", "missing criteria"),
        ];
        for (text, expected) in cases {
            let error = parse_err(text);
            assert!(error.starts_with("/test/config:1: "), "{error}");
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn tokens_and_tilde_expand() {
        let text = "Host web\n  HostName %h.example\n  User bob\n  Port 2200\n  HostKeyAlias Key\n\
                    \x20 IdentityFile %d/.ssh/%h_%p_%r_%u_%n_%%\n  IdentityFile ~/.ssh/id_%k\n\
                    \x20 IdentityFile ~\n  IdentityFile ~alice/x\n\
                    \x20 CertificateFile ~/%r-cert.pub\n  UserKnownHostsFile ~/.ssh/kh_%h %d/kh2\n\
                    \x20 GlobalKnownHostsFile ~/g1 /g/%h\n  IdentityAgent ~/agent.%h\n";
        let config = resolve(text, "web");
        assert_eq!(
            config.identity_files,
            paths(&[
                "/home/alice/.ssh/web.example_2200_bob_alice_web_%",
                "/home/alice/.ssh/id_key",
                "/home/alice/",
                "/home/alice/x",
            ])
        );
        assert_eq!(
            config.certificate_files,
            paths(&["/home/alice/bob-cert.pub"])
        );
        assert_eq!(config.host_key_alias.as_deref(), Some("key"));
        let jumps = resolve(
            "Host a\n  ProxyJump bob@j1:2201,j2\nHost *\n  ProxyJump j3\n",
            "a",
        );
        assert_eq!(
            jumps.proxy_jump,
            ["bob@j1:2201", "j2"],
            "the first one found applies"
        );
        assert!(
            resolve("Host a\n  ProxyJump none\n", "a")
                .proxy_jump
                .is_empty()
        );
        assert_eq!(
            config.user_known_hosts_files,
            paths(&["/home/alice/.ssh/kh_web.example", "/home/alice/kh2"])
        );
        // ssh.c expands only ~ in GlobalKnownHostsFile.
        assert_eq!(
            config.global_known_hosts_files,
            paths(&["/home/alice/g1", "/g/%h"])
        );
        assert_eq!(
            config.identity_agent,
            Some(IdentityAgent::Path(PathBuf::from(
                "/home/alice/agent.web.example"
            )))
        );
    }

    #[test]
    fn remote_user_and_port_default_to_local_user_and_22() {
        let config = resolve("Host *\n  IdentityFile /k/%r@%h:%p\n", "Web");
        assert_eq!(config.identity_files, paths(&["/k/alice@web:22"]));
        assert_eq!(config.user, None);
    }

    #[test]
    fn user_expands_tokens_but_match_user_sees_it_raw() {
        let text = "Host web\n  User %u-%n\nMatch user %u-*\n  Port 1\n";
        let config = resolve(text, "web");
        assert_eq!(config.user.as_deref(), Some("alice-web"));
        assert_eq!(config.port, Some(1));
        assert!(parse_err("User %r\n").contains("%r is not a token"));
    }

    #[test]
    fn environment_variables_expand_in_file_keywords() {
        let home = std::env::var("HOME").expect("HOME is set for tests");
        let config = resolve(
            "IdentityFile ${HOME}/id\nCertificateFile ${HOME}/c\n",
            "web",
        );
        assert_eq!(
            config.identity_files,
            vec![PathBuf::from(format!("{home}/id"))]
        );
        assert_eq!(
            config.certificate_files,
            vec![PathBuf::from(format!("{home}/c"))]
        );

        // ssh_config(5): a setting naming an unset variable is ignored.
        let unset = "IdentityFile ${SSHTTP_TEST_SURELY_UNSET}/id\nIdentityFile /k/a\n";
        assert_eq!(resolve(unset, "web").identity_files, paths(&["/k/a"]));
        // readconf.c refuses it for IdentityAgent.
        let error = parse_err("\n\nIdentityAgent ${SSHTTP_TEST_SURELY_UNSET}\n");
        assert!(error.starts_with("/test/config:3: "), "{error}");
        assert!(
            error.contains("SSHTTP_TEST_SURELY_UNSET is not set"),
            "{error}"
        );
        assert!(parse_err("IdentityFile ${HOME\n").contains("bad ${VAR}"));
        // A `$` without braces is literal, and HostName expands no variables.
        assert_eq!(
            resolve("IdentityFile /k/$HOME\n", "w").identity_files,
            paths(&["/k/$HOME"])
        );
        assert_eq!(
            resolve("HostName ${HOME}\n", "w").host_name.as_deref(),
            Some("${home}")
        );
    }

    #[test]
    fn unknown_or_unsupported_token_is_an_error_at_its_line() {
        let cases = [
            ("\n# c\n  IdentityFile ~/.ssh/%z\n", 3, "%z is not a token"),
            ("CertificateFile /c/%C\n", 1, "%C is not a token"),
            (
                "Host x\n  HostName %h.%p\n",
                2,
                "%p is not a token sshttp expands here (it expands %%, %h)",
            ),
            ("UserKnownHostsFile /k/%\n", 1, "`%` at the end"),
            ("IdentityAgent /a/%L\n", 1, "%L is not a token"),
            ("Include /etc/%h\n", 1, "%h is not a token"),
            ("IdentityFile ~bob/id\n", 1, "not ~bob"),
        ];
        for (text, line, expected) in cases {
            let error = parse_err(text);
            assert!(
                error.starts_with(&format!("/test/config:{line}: ")),
                "{error}"
            );
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn bad_values_name_path_line_keyword_and_value() {
        let cases = [
            (
                "IdentitiesOnly maybe\n",
                "bad value for IdentitiesOnly: \"maybe\" (expected yes or no)",
            ),
            ("HashKnownHosts 1\n", "bad value for HashKnownHosts: \"1\""),
            ("Compression true\n", "bad value for Compression: \"true\""),
            (
                "StrictHostKeyChecking sometimes\n",
                "bad value for StrictHostKeyChecking",
            ),
            (
                "ConnectTimeout soon\n",
                "bad value for ConnectTimeout: \"soon\"",
            ),
            ("IdentityAgent $1-x\n", "invalid environment name"),
            ("User a b\n", "extra arguments"),
            ("User \"\"\n", "missing argument"),
            ("HostName\n", "no argument after keyword"),
            ("User \"unterminated\n", "invalid quotes"),
            ("UserKnownHostsFile none /k\n", "\"none\" must appear alone"),
            ("= value\n", "no keyword"),
        ];
        for (text, expected) in cases {
            let error = parse_err(&format!("Host x\n  {text}"));
            assert!(error.starts_with("/test/config:2: "), "{error}");
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        // Even in a block that applies to no host: the file is wrong either way.
        assert!(parse_err("Host nothing\n  IdentitiesOnly perhaps\n").contains("perhaps"));
    }

    #[test]
    fn flags_accept_openssh_spellings() {
        for (value, expected) in [
            ("yes", true),
            ("TRUE", true),
            ("No", false),
            ("false", false),
        ] {
            let config = resolve(
                &format!("IdentitiesOnly {value}\nHashKnownHosts {value}\n"),
                "x",
            );
            assert_eq!(config.identities_only, Some(expected), "{value}");
            assert_eq!(config.hash_known_hosts, Some(expected), "{value}");
        }
        assert_eq!(resolve("Compression NO\n", "x").compression, Some(false));
    }

    #[test]
    fn keyword_equals_quotes_and_comments() {
        let text = "  # comment\n\
                    Host=web\n\
                    \tUSER = \"bob\"\n\
                    \x20 port=2022 # trailing comment\n\
                    \x20 IdentityFile \"/keys/my key\"\n\
                    \x20 IdentityFile /keys/with\\ space\n\
                    \x20 IdentityFile '/keys/single q'\n\
                    \x20 IdentityFile /keys/a\"b c\"d\n\
                    \x20 CertificateFile=\"/c/x\"\r\n\
                    \x20 HostName \t host.example  \x0c\n";
        let config = resolve(text, "web");
        assert_eq!(config.user.as_deref(), Some("bob"));
        assert_eq!(config.port, Some(2022));
        assert_eq!(config.host_name.as_deref(), Some("host.example"));
        assert_eq!(
            config.identity_files,
            paths(&[
                "/keys/my key",
                "/keys/with space",
                "/keys/single q",
                "/keys/ab cd"
            ])
        );
        assert_eq!(config.certificate_files, paths(&["/c/x"]));
    }

    #[test]
    fn port_values() {
        assert_eq!(resolve("Port 65535\n", "x").port, Some(65535));
        assert_eq!(resolve("Port 022\n", "x").port, Some(22));
        for bad in [
            "0",
            "65536",
            "-1",
            "22a",
            "99999999999999999999",
            "nosuchservice-sshttp",
        ] {
            let error = parse_err(&format!("Port {bad}\n"));
            assert_eq!(error, format!("/test/config:1: bad port for Port: {bad:?}"));
        }
    }

    #[test]
    fn connect_timeout_values() {
        let cases = [
            ("10", Some(10)),
            ("1m30s", Some(90)),
            ("1h", Some(3600)),
            ("1.9", Some(1)),
            ("0", None),
            ("none", None),
        ];
        for (value, seconds) in cases {
            let config = resolve(&format!("ConnectTimeout {value}\nConnectTimeout 7\n"), "x");
            let expected = match (value, seconds) {
                // `none` leaves the option unset, so the later value applies.
                ("none", _) => Some(Duration::from_secs(7)),
                (_, seconds) => seconds.map(Duration::from_secs),
            };
            assert_eq!(config.connect_timeout, expected, "{value}");
        }
        for bad in ["", "1x", "1.5m", "1.", "5s5", ".", "1..2", "99999999999"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
        assert_eq!(parse_time(".5"), Some(0));
        assert_eq!(parse_time("1w1d"), Some(691_200));
    }

    #[test]
    fn strict_host_key_checking_values() {
        let cases = [
            ("yes", StrictHostKeyChecking::Yes),
            ("true", StrictHostKeyChecking::Yes),
            ("no", StrictHostKeyChecking::No),
            ("off", StrictHostKeyChecking::No),
            ("FALSE", StrictHostKeyChecking::No),
            ("accept-new", StrictHostKeyChecking::AcceptNew),
            ("ask", StrictHostKeyChecking::Ask),
        ];
        for (value, expected) in cases {
            let config = resolve(&format!("StrictHostKeyChecking {value}\n"), "x");
            assert_eq!(config.strict_host_key_checking, Some(expected), "{value}");
        }
    }

    #[test]
    fn identity_agent_values() {
        let home = std::env::var("HOME").expect("HOME is set for tests");
        let cases = [
            ("none", IdentityAgent::None),
            ("SSH_AUTH_SOCK", IdentityAgent::SshAuthSock),
            ("$SSH_AUTH_SOCK", IdentityAgent::SshAuthSock),
            ("$HOME", IdentityAgent::Path(PathBuf::from(&home))),
            ("$SSHTTP_TEST_SURELY_UNSET", IdentityAgent::None),
            (
                "${HOME}/agent",
                IdentityAgent::Path(PathBuf::from(format!("{home}/agent"))),
            ),
            (
                "/run/agent.sock",
                IdentityAgent::Path(PathBuf::from("/run/agent.sock")),
            ),
            (
                "~/.agent/%h",
                IdentityAgent::Path(PathBuf::from("/home/alice/.agent/x")),
            ),
        ];
        for (value, expected) in cases {
            let config = resolve(&format!("IdentityAgent {value}\n"), "x");
            assert_eq!(config.identity_agent, Some(expected), "{value}");
        }
    }

    #[test]
    fn known_hosts_none_and_first_directive_wins() {
        let config = resolve(
            "UserKnownHostsFile none\nUserKnownHostsFile /a\nGlobalKnownHostsFile /g1 /g2\nGlobalKnownHostsFile /g3\n",
            "x",
        );
        assert!(config.user_known_hosts_files.is_empty());
        assert!(config.user_known_hosts_none);
        assert_eq!(config.global_known_hosts_files, paths(&["/g1", "/g2"]));
        assert!(!config.global_known_hosts_none);
        let too_many = format!("UserKnownHostsFile {}\n", vec!["/k"; 33].join(" "));
        assert!(parse_err(&too_many).contains("more than 32"));
    }

    #[test]
    fn explicit_user_and_port_win_over_the_file() {
        let text = "Host web\n  User bob\n  Port 2222\n  IdentityFile /k/%r-%p\n";
        let config = parse(text).resolve("web", Some("carol"), Some(443));
        assert_eq!(config.user.as_deref(), Some("carol"));
        assert_eq!(config.port, Some(443));
        assert_eq!(config.identity_files, paths(&["/k/carol-443"]));
        let config = parse(text).resolve("web", None, None);
        assert_eq!(config.identity_files, paths(&["/k/bob-2222"]));
    }

    #[test]
    fn unknown_keywords_are_ignored() {
        let config = resolve(
            "Frobnicate yes\nForwardAgent maybe-not-checked\nPort 1\n",
            "x",
        );
        assert_eq!(config.port, Some(1));
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }

    fn context_in(home: &Path) -> Context {
        Context {
            home: home.to_path_buf(),
            local_user: "alice".to_owned(),
        }
    }

    #[test]
    fn include_of_a_device_or_a_fifo_is_an_error_not_a_hang() {
        // Found by the ssh_config fuzz target: `Include /dev/console` blocked reading
        // the console. A FIFO would block in open itself.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for target in ["/dev/null", "/dev/zero", fifo.to_str().unwrap()] {
            let error = parse_err(&format!("Include {target}\n"));
            assert!(error.contains("not a regular file"), "{target}: {error}");
        }
    }

    #[test]
    fn include_relative_to_dot_ssh_with_sorted_glob() {
        let home = tempfile::tempdir().expect("tempdir");
        let ssh = home.path().join(".ssh");
        write(
            &ssh.join("conf.d/20-b.conf"),
            "IdentityFile /k/b\nHost nothing\n  IdentityFile /k/never\n",
        );
        write(
            &ssh.join("conf.d/10-a.conf"),
            "IdentityFile /k/a\nPort 1010\n",
        );
        write(&ssh.join("conf.d/.hidden.conf"), "IdentityFile /k/hidden\n");
        write(&ssh.join("single"), "User included\n");
        let text = "Include conf.d/*.conf\nIdentityFile /k/after\nInclude single missing-file ~/.ssh/single\n";
        let config = SshConfig::parse(text, &ssh.join("config"), &context_in(home.path()))
            .expect("parses")
            .resolve("web", None, None);
        // The `Host nothing` inside 20-b.conf ends at that file: /k/after still applies.
        assert_eq!(config.identity_files, paths(&["/k/a", "/k/b", "/k/after"]));
        assert_eq!(config.port, Some(1010));
        assert_eq!(config.user.as_deref(), Some("included"));
    }

    #[test]
    fn include_glob_star_stays_within_one_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir.path().join("a/x.conf"), "Port 1\n");
        write(&dir.path().join("a/b/x.conf"), "User deep\n");
        let text = format!("Include {}/**/x.conf\n", dir.path().display());
        let config = SshConfig::parse(&text, &dir.path().join("config"), &context_in(dir.path()))
            .expect("parses")
            .resolve("web", None, None);
        assert_eq!((config.port, config.user), (Some(1), None));
    }

    #[test]
    fn include_inside_a_block_applies_under_its_condition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("inner.conf");
        write(&inner, "Port 2020\nMatch all\n  User inner\n");
        let text = format!(
            "Host web\n  Include {}\n  Compression yes\nHost *\n  HashKnownHosts yes\n",
            inner.display()
        );
        let config = SshConfig::parse(&text, &dir.path().join("config"), &context_in(dir.path()))
            .expect("parses");
        let web = config.resolve("web", None, None);
        assert_eq!((web.port, web.user.as_deref()), (Some(2020), Some("inner")));
        // Back in the Host web block after the include.
        assert_eq!(web.compression, Some(true));
        let other = config.resolve("other", None, None);
        assert_eq!(
            (other.port, other.user, other.compression),
            (None, None, None)
        );
        assert_eq!(other.hash_known_hosts, Some(true));
    }

    #[test]
    fn include_depth_is_limited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chain = |depth: usize| {
            for level in 0..depth {
                let next = dir.path().join(format!("f{}", level + 1));
                write(
                    &dir.path().join(format!("f{level}")),
                    &format!("Include {}\n", next.display()),
                );
            }
            write(&dir.path().join(format!("f{depth}")), "Port 1616\n");
            SshConfig::load(&[dir.path().join("f0")], &context_in(dir.path()))
        };
        let deepest = chain(MAX_INCLUDE_DEPTH).expect("16 levels are allowed");
        assert_eq!(deepest.resolve("x", None, None).port, Some(1616));
        let error = chain(MAX_INCLUDE_DEPTH + 1)
            .expect_err("17 levels are not")
            .to_string();
        assert!(error.contains("nested more than 16 deep"), "{error}");
        assert!(
            error.starts_with(&format!("{}:1: ", dir.path().join("f16").display())),
            "{error}"
        );

        let looping = dir.path().join("loop");
        write(&looping, &format!("Include {}\n", looping.display()));
        let error = SshConfig::load(&[looping], &context_in(dir.path())).expect_err("loops");
        assert!(error.to_string().contains("nested more than"), "{error}");
    }

    #[test]
    fn include_fan_out_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 20 files each including the same 20: 421 reads at depth 2 without the limit.
        let leaves = dir.path().join("leaf*");
        for n in 0..20 {
            write(
                &dir.path().join(format!("mid{n:02}")),
                &format!("Include {}\n", leaves.display()),
            );
            write(&dir.path().join(format!("leaf{n:02}")), "Port 1\n");
        }
        write(
            &dir.path().join("f1"),
            &format!("Include {}/mid*\n", dir.path().display()),
        );
        let error = SshConfig::load(&[dir.path().join("f1")], &context_in(dir.path()))
            .expect_err("bounded");
        assert!(
            error
                .to_string()
                .contains("more than 256 configuration files"),
            "{error}"
        );
    }

    #[test]
    fn include_in_system_file_is_relative_to_etc_ssh_and_refuses_tilde() {
        let dir = tempfile::tempdir().expect("tempdir");
        let context = context();
        let mut loader = Loader::new(&context);
        let error = loader
            .parse_text("Include ~/x\n", Arc::from(dir.path()), Origin::System, 0)
            .expect_err("refused");
        assert!(error.to_string().contains("~ in a system file"), "{error}");
        // Relative: /etc/ssh/<name>, which does not exist here and is skipped.
        let mut loader = Loader::new(&context);
        let entries = loader
            .parse_text(
                "Include sshttp-test-no-such.conf\n",
                Arc::from(dir.path()),
                Origin::System,
                0,
            )
            .expect("parses");
        assert!(matches!(entries.as_slice(), [Entry::Include { files }] if files.is_empty()));
    }

    #[test]
    fn load_reads_files_in_order_and_skips_missing_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        write(&first, "Host web\n  Port 1\nHost *\n  IdentityFile /k/1\n");
        // A file starts applying to every host again, whatever the last one ended in.
        write(&second, "Port 2\nUser two\nIdentityFile /k/2\n");
        let config = SshConfig::load(
            &[dir.path().join("absent"), first, second],
            &context_in(dir.path()),
        )
        .expect("loads")
        .resolve("web", None, None);
        assert_eq!(
            (config.port, config.user.as_deref()),
            (Some(1), Some("two"))
        );
        assert_eq!(config.identity_files, paths(&["/k/1", "/k/2"]));
    }

    #[test]
    fn load_default_reads_user_config_from_home() {
        let home = tempfile::tempdir().expect("tempdir");
        write(
            &home.path().join(".ssh/config"),
            "Host sshttp-test-alias\n  Port 4242\n",
        );
        let config = SshConfig::load_default(&context_in(home.path())).expect("loads");
        assert_eq!(
            config.resolve("sshttp-test-alias", None, None).port,
            Some(4242)
        );
    }

    #[test]
    fn oversized_and_unreadable_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        let size = usize::try_from(MAX_FILE_BYTES).expect("fits") + 1;
        fs::write(&big, vec![b'#'; size]).expect("write");
        let error = SshConfig::load(std::slice::from_ref(&big), &context()).expect_err("too big");
        assert_eq!(
            error.to_string(),
            format!("{}: larger than 1048576 bytes", big.display())
        );

        let error =
            SshConfig::load(&[dir.path().to_path_buf()], &context()).expect_err("a directory");
        assert!(error.to_string().contains("not a regular file"), "{error}");

        let including = format!("\nInclude {}\n", big.display());
        let error = SshConfig::parse(&including, Path::new("/test/config"), &context())
            .expect_err("too big");
        assert!(
            error.to_string().starts_with("/test/config:2: Include: "),
            "{error}"
        );
    }

    #[test]
    fn split_args_follows_argv_split() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("a b\tc", Some(&["a", "b", "c"])),
            ("\"a b\" c", Some(&["a b", "c"])),
            ("a\\ b", Some(&["a b"])),
            ("\"a\\\"b\"", Some(&["a\"b"])),
            ("a\\x", Some(&["a\\x"])),
            ("a #b", Some(&["a"])),
            ("a#b", Some(&["a#b"])),
            ("\"#a\"", Some(&["#a"])),
            ("\"\"", Some(&[""])),
            ("'a\"b'", Some(&["a\"b"])),
            ("\"a", None),
            ("a'", None),
        ];
        for (text, expected) in cases {
            let expected =
                expected.map(|args| args.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>());
            assert_eq!(split_args(text), expected, "{text:?}");
        }
    }

    #[test]
    fn match_hostname_ignores_case_on_both_sides() {
        assert!(match_hostname("Web.Example", "*.EXAMPLE"));
        assert!(!match_hostname("web.example", "*.EXAMPLE,!WEB.*"));
    }

    /// Never panics, whatever the input: a bounded run of pseudo-random lines.
    #[test]
    fn arbitrary_input_never_panics() {
        const WORDS: &[&str] = &[
            "Host",
            "Match",
            "Include",
            "IdentityFile",
            "Port",
            "User",
            "HostName",
            "all",
            "host",
            "!",
            "=",
            "\"",
            "'",
            "\\",
            "#",
            "%",
            "%h",
            "%%",
            "~",
            "${",
            "}",
            "*",
            "?",
            " ",
            "\t",
            "exec",
            "final",
            "none",
            "yes",
            "é",
            "\r",
            "\x0c",
            "ConnectTimeout",
            "1.5",
            "IdentityAgent",
            "$",
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % bound as u64).expect("fits")
        };
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..next(6) {
                for _ in 0..next(8) {
                    text.push_str(WORDS[next(WORDS.len())]);
                }
                text.push('\n');
            }
            if let Ok(config) = SshConfig::parse(&text, Path::new("/fuzz"), &context()) {
                let _ = config.resolve("host", None, None);
                let _ = config.resolve("", Some("u"), Some(1));
            }
        }
    }

    /// Expands what `ssh -G` (9.x) prints unexpanded, with the values it reports.
    fn expand_like_ssh(
        raw: &str,
        home: &Path,
        host: &str,
        user: &str,
        port: &str,
        alias: &str,
    ) -> PathBuf {
        let raw = match raw.strip_prefix("~/") {
            Some(rest) => format!("{}/{rest}", home.display()),
            None => raw.to_owned(),
        };
        let mut out = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(&home.display().to_string()),
                Some('h') => out.push_str(host),
                Some('r') => out.push_str(user),
                Some('p') => out.push_str(port),
                Some('n') => out.push_str(alias),
                other => panic!("unexpected token {other:?} in {raw}"),
            }
        }
        PathBuf::from(out)
    }

    /// Runs the real `ssh -G -F config` and compares the settings both understand.
    #[test]
    fn resolves_like_openssh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config");
        write(
            &dir.path().join("conf.d/10-a.conf"),
            "IdentityFile /keys/inc_a\nHost nothere\n  IdentityFile /keys/never\n",
        );
        write(
            &dir.path().join("conf.d/20-b.conf"),
            "CertificateFile /keys/inc_b-cert.pub\n",
        );
        let text = format!(
            "# sshttp's resolve() against ssh -G\n\
             Host *.internal !bastion.internal\n\
             \x20 User ops\n\
             \x20 IdentityFile %d/.ssh/id_%h\n\
             Host gw\n\
             \x20 HostName GW.%h.Example.COM\n\
             \x20 IdentityFile /keys/gw_first\n\
             \x20 CertificateFile /keys/gw-cert.pub\n\
             \x20 Include {dir}/conf.d/*.conf\n\
             \x20 IdentityFile none\n\
             Match host gw.gw.example.com\n\
             \x20 Port 2201\n\
             \x20 IdentitiesOnly yes\n\
             \x20 IdentityFile /keys/matched_%r_%p\n\
             Host gw other\n\
             \x20 Port 9999\n\
             \x20 User deploy\n\
             \x20 IdentityFile /keys/gw_first\n\
             \x20 IdentityFile /keys/second\n\
             Match originalhost gw user deploy\n\
             \x20 CertificateFile /keys/second-cert.pub\n\
             Match host=*.internal !originalhost=db.*\n\
             \x20 Port=2300\n\
             Host *\n\
             \x20 IdentitiesOnly no\n\
             \x20 IdentityFile \"/keys/default key\"\n\
             \x20 User fallback\n",
            dir = dir.path().display()
        );
        write(&config_path, &text);
        let context = context_in(dir.path());
        let config = SshConfig::load(std::slice::from_ref(&config_path), &context).expect("loads");

        let cases: &[(&str, Option<&str>, Option<u16>)] = &[
            ("gw", None, None),
            ("gw", Some("explicit"), Some(1234)),
            ("GW", None, None),
            ("other", None, None),
            ("web.internal", None, None),
            ("db.internal", None, None),
            ("bastion.internal", None, None),
            ("elsewhere", None, None),
        ];
        for (alias, user, port) in cases {
            let mut command = std::process::Command::new("ssh");
            command.arg("-G").arg("-F").arg(&config_path);
            if let Some(user) = user {
                command.arg("-l").arg(user);
            }
            if let Some(port) = port {
                command.arg("-p").arg(port.to_string());
            }
            let output = command
                .arg(alias)
                .output()
                .expect("OpenSSH's ssh is installed");
            assert!(
                output.status.success(),
                "ssh -G {alias}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let stdout = String::from_utf8(output.stdout).expect("utf-8");
            let values = |key: &str| -> Vec<String> {
                stdout
                    .lines()
                    .filter_map(|line| line.split_once(' '))
                    .filter(|(name, _)| *name == key)
                    .map(|(_, value)| value.to_owned())
                    .collect()
            };
            let one = |key: &str| values(key).into_iter().next().expect(key);
            let (host, ssh_user, ssh_port) = (one("hostname"), one("user"), one("port"));

            let ours = config.resolve(alias, *user, *port);
            assert_eq!(
                ours.host_name
                    .clone()
                    .unwrap_or_else(|| alias.to_ascii_lowercase()),
                host,
                "{alias}"
            );
            assert_eq!(
                ours.user
                    .clone()
                    .unwrap_or_else(|| context.local_user.clone()),
                ssh_user,
                "{alias}"
            );
            assert_eq!(ours.port.unwrap_or(22).to_string(), ssh_port, "{alias}");
            let expand =
                |raw: &String| expand_like_ssh(raw, dir.path(), &host, &ssh_user, &ssh_port, alias);
            let identity_files: Vec<PathBuf> = values("identityfile")
                .iter()
                .filter(|raw| !raw.eq_ignore_ascii_case("none"))
                .map(expand)
                .collect();
            assert_eq!(ours.identity_files, identity_files, "{alias}");
            assert_eq!(
                ours.identity_file_none,
                values("identityfile").contains(&"none".to_owned()),
                "{alias}"
            );
            let certificate_files: Vec<PathBuf> =
                values("certificatefile").iter().map(expand).collect();
            assert_eq!(ours.certificate_files, certificate_files, "{alias}");
            let identities_only = one("identitiesonly") == "yes";
            assert_eq!(
                ours.identities_only.unwrap_or(false),
                identities_only,
                "{alias}"
            );
        }
    }
}
