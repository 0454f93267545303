//! An HTTP handler: `GET /hello?name=you` on the web port answers "hello, you".
//!
//! ```text
//! cargo run --example hello_http
//! curl 'http://127.0.0.1:8080/hello?name=romp'
//! ```

use romp::api::HttpContext;
use romp::http::Response;

#[path = "support/mod.rs"]
mod common;

fn main() {
    let server = romp::Server::builder()
        .config(common::config())
        .http_handler("/hello", |req: &HttpContext<'_>| {
            let name = req.target.split_once("name=").map(|(_, n)| n.split('&').next().unwrap_or("")).unwrap_or("world");
            Some(Response::text(200, &format!("hello, {name}")))
        })
        .start()
        .expect("start");
    println!("STOMP {} web {} ; GET /hello ; Ctrl-C to stop", server.local_addrs()[0], server.web_addr().expect("web port enabled"));
    common::wait_for_signal();
    server.shutdown();
    if let Err(e) = server.join() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
