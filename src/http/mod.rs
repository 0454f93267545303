//! Minimal HTTP/1.1 for the web port, sans-io: request heads (parsed by httparse, bounded) and
//! responses. Only GET and HEAD are served; everything else gets 405.

use thiserror::Error;

/// Header lines in one request head.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head. Header names are lower-cased.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// Keep the connection open after the response?
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(|v| v.to_ascii_lowercase());
        match self.minor {
            0 => conn.is_some_and(|c| c.contains("keep-alive")),
            _ => !conn.is_some_and(|c| c.contains("close")),
        }
    }

    /// Does the request announce a body? (We serve no method that takes one.)
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some() || self.header("content-length").is_some_and(|v| v.trim() != "0")
    }
}

#[derive(Debug)]
pub enum Parsed {
    Complete(Request, usize),
    Partial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("request head too large")]
    HeadTooLarge,
    #[error("malformed request")]
    Bad,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::Bad => 400,
        }
    }
}

/// Parse a request head from the start of `buf`, at most `max_head` bytes.
pub fn parse_request(buf: &[u8], max_head: usize) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            if n > max_head {
                return Err(HttpError::HeadTooLarge);
            }
            let headers = req
                .headers
                .iter()
                .map(|h| Ok((h.name.to_ascii_lowercase(), std::str::from_utf8(h.value).map_err(|_| HttpError::Bad)?.to_string())))
                .collect::<Result<Vec<_>, HttpError>>()?;
            Ok(Parsed::Complete(
                Request {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    minor: req.version.unwrap_or(1),
                    headers,
                },
                n,
            ))
        }
        Ok(httparse::Status::Partial) if buf.len() > max_head => Err(HttpError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::HeadTooLarge),
        Err(_) => Err(HttpError::Bad),
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        101 => "Switching Protocols",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type: content_type.to_string(), body: body.into(), headers: Vec::new() }
    }

    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{text}\n"))
    }

    pub fn json(body: String) -> Response {
        Response::new(200, "application/json", body)
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// Append the response; `head_only` for HEAD requests (headers, no body).
    pub fn write(&self, out: &mut Vec<u8>, keep_alive: bool, head_only: bool) {
        out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes());
        out.extend_from_slice(format!("Content-Type: {}\r\nContent-Length: {}\r\n", self.content_type, self.body.len()).as_bytes());
        out.extend_from_slice(if keep_alive { b"Connection: keep-alive\r\n" as &[u8] } else { b"Connection: close\r\n" });
        out.extend_from_slice(b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Content type by file extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Decode a request path for static files: percent-decoding, then refuse anything that could
/// leave the web root (`..` segments, backslashes, NULs) or that is not UTF-8.
pub fn safe_path(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    if !s.starts_with('/') || s.contains('\\') || s.contains('\0') || s.split('/').any(|seg| seg == ".." || seg == ".") {
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_at_every_split() {
        let text = b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Y: z\r\n\r\nrest";
        for split in 0..text.len() - 4 {
            assert!(matches!(parse_request(&text[..split], 8192), Ok(Parsed::Partial)), "split {split}");
        }
        match parse_request(text, 8192).unwrap() {
            Parsed::Complete(r, n) => {
                assert_eq!(n, text.len() - 4);
                assert_eq!(r.method, "GET");
                assert_eq!(r.path(), "/a/b");
                assert_eq!(r.header("x-y"), Some("z"));
                assert!(!r.keep_alive());
            }
            _ => panic!(),
        }
    }

    #[test]
    fn limits_and_garbage() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(9000));
        assert_eq!(parse_request(big.as_bytes(), 8192).unwrap_err(), HttpError::HeadTooLarge);
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(9000));
        assert_eq!(parse_request(endless.as_bytes(), 8192).unwrap_err(), HttpError::HeadTooLarge);
        let many: String = (0..100).map(|i| format!("H{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_request(many.as_bytes(), 1 << 20).unwrap_err(), HttpError::HeadTooLarge);
        assert_eq!(parse_request(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 8192).unwrap_err(), HttpError::Bad);
    }

    #[test]
    fn keep_alive_rules() {
        let r = |t: &str| match parse_request(t.as_bytes(), 8192).unwrap() {
            Parsed::Complete(r, _) => r,
            _ => panic!(),
        };
        assert!(r("GET / HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!r("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(r("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive());
    }

    #[test]
    fn no_path_traversal() {
        assert_eq!(safe_path("/index.html").as_deref(), Some("/index.html"));
        assert_eq!(safe_path("/a%20b.txt").as_deref(), Some("/a b.txt"));
        for bad in ["/../etc/passwd", "/a/%2e%2e/b", "/a/..", "/%2e%2e%2fx", "a", "/x\\y", "/%00", "/%zz", "/./x"] {
            assert_eq!(safe_path(bad), None, "{bad}");
        }
    }
}
