//! The examples and the exit status table that `sshttp get --help` and friends show.

/// `sshttp get` examples.
pub(crate) const GET: &str = "  \
  sshttp get 'sshttp://localhost:2222/multiply?a=4&b=5'
  sshttp get -i -H 'accept: application/json' 'sshttp://localhost:2222/multiply?a=6&b=7'
  sshttp get --vhost static.example.com sshttp://gw.example.com/images/header.png -o header.png
  sshttp get --fail --host-key SHA256:… sshttp://alice@gw.example.com:2222/status
";

/// `sshttp head` examples.
pub(crate) const HEAD: &str = "  \
  sshttp head sshttp://localhost:2222/images/header.png
  sshttp head -v sshttp://localhost:2222/
";

/// `sshttp post` examples.
pub(crate) const POST: &str = "  \
  sshttp post sshttp://localhost:2222/echo -d 'a=1&b=2'
  sshttp post sshttp://localhost:2222/echo/body --data-binary @photo.jpg -o copy.jpg
  tar c dir | sshttp post sshttp://localhost:2222/echo/body --data-binary @- > dir.tar
  sshttp post -H 'content-type: application/json' -d '{\"a\":4}' sshttp://localhost:2222/echo
";

/// `sshttp put` examples.
pub(crate) const PUT: &str = "  \
  sshttp put sshttp://gw.example.com/files/report.pdf --data-binary @report.pdf
  sshttp put -H 'content-type: text/plain' -d @notes.txt sshttp://gw.example.com/notes
";

/// `sshttp patch` examples.
pub(crate) const PATCH: &str = "  \
  sshttp patch -H 'content-type: application/json' -d '{\"done\":true}' sshttp://gw.example.com/todo/7
";

/// `sshttp delete` examples.
pub(crate) const DELETE: &str = "  \
  sshttp delete --fail sshttp://gw.example.com/files/report.pdf
";

const EXIT_STATUSES: &str = "\
Exit status:
  0  a complete response arrived, whatever its status (unless --fail)
  1  no complete response: connecting, the host key check or authentication
     failed, the gateway refused the request, a timeout passed, the response
     was aborted, a body failed, or the output could not be written
  2  usage error: a bad option, URL or header, or an unreadable --data file
  4  with --fail: the status was 4xx (nothing of the body is printed)
  5  with --fail: the status was 5xx (nothing of the body is printed)

Logs go to stderr, filtered by RUST_LOG (default: warn); -v adds the client's
steps (sshttp_client=debug) and the request and response heads.
";

/// The text after `-h`: the examples.
pub(crate) fn short(examples: &str) -> String {
    format!("Examples:\n{examples}")
}

/// The text after `--help`: the examples and the exit statuses.
pub(crate) fn long(examples: &str) -> String {
    format!("Examples:\n{examples}\n{EXIT_STATUSES}")
}
