use super::*;

#[test]
fn socket_collisions() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(same_socket(a("127.0.0.1:9464"), a("127.0.0.1:9464")));
    assert!(same_socket(a("0.0.0.0:9464"), a("127.0.0.1:9464")));
    assert!(!same_socket(a("127.0.0.1:9464"), a("127.0.0.2:9464")));
    assert!(!same_socket(a("127.0.0.1:0"), a("127.0.0.1:0")));
    assert!(!same_socket(a("127.0.0.1:1"), a("127.0.0.1:2")));
}

#[test]
fn self_loops() {
    let listen: SocketAddr = "0.0.0.0:26657".parse().unwrap();
    let uri = |s: &'static str| http::Uri::from_static(s);
    assert!(points_at(&uri("http://127.0.0.1:26657/"), listen));
    assert!(points_at(&uri("http://localhost:26657/"), listen));
    assert!(!points_at(&uri("http://node:26657/"), listen));
    assert!(!points_at(&uri("http://10.0.0.2:26657/"), listen));
    assert!(!points_at(&uri("http://127.0.0.1:26658/"), listen));
    let local: SocketAddr = "127.0.0.1:26658".parse().unwrap();
    assert!(points_at(&uri("http://[::1]:26658/"), local));
    assert!(!points_at(&uri("http://10.0.0.2:26658/"), local));
}
