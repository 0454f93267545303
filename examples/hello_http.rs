//! An HTTP handler: `GET /hello?name=you` on the web port answers "hello, you".
//!
//! ```text
//! cargo run --example hello_http
//! curl 'http://127.0.0.1:8080/hello?name=romp'
//! ```

use romp::api::HttpContext;
use romp::http::Response;

fn main() {
    let server = romp::Server::builder()
        .http_handler("/hello", |req: &HttpContext<'_>| {
            let name = req.target.split_once("name=").map(|(_, n)| n.split('&').next().unwrap_or("")).unwrap_or("world");
            Some(Response::text(200, &format!("hello, {name}")))
        })
        .start()
        .expect("start");
    println!("GET http://{}/hello ; Ctrl-C to stop", server.web_addr().expect("web port enabled"));
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    let _ = set.wait();
    server.shutdown();
    server.join();
}
