use super::*;
use std::time::Duration;

#[test]
fn http_dates() {
    let at = |s| http_date(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(at(1_735_689_599), "Tue, 31 Dec 2024 23:59:59 GMT");
}

#[test]
fn head_is_sanitised_and_framed() {
    let headers = vec![
        (
            "X-Image-Meta-Property-os_distro".to_string(),
            "a\r\nSet-Cookie: x".to_string(),
        ),
        ("Content-Length".to_string(), "999".to_string()),
        ("Bad Name".to_string(), "v".to_string()),
    ];
    let h = head_bytes(200, &headers, Frame::Length(5), false, false);
    let text = String::from_utf8(h).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "));
    assert!(text.contains("\r\nX-Image-Meta-Property-os_distro: a  Set-Cookie: x\r\n"));
    assert!(text.contains("\r\nContent-Length: 5\r\n"));
    assert!(!text.contains("999"));
    assert!(!text.contains("Bad Name"));
    assert!(text.ends_with("Connection: close\r\n\r\n"));
    let h10 = head_bytes(204, &[], Frame::Bodyless, true, true);
    let text = String::from_utf8(h10).unwrap();
    assert!(text.ends_with("Connection: keep-alive\r\n\r\n"));
    assert!(!text.contains("Content-Length"));
}

#[test]
fn odd_statuses_become_500() {
    assert_eq!(checked_status(0), 500);
    assert_eq!(checked_status(1000), 500);
    assert_eq!(checked_status(404), 404);
}
