use super::*;

#[test]
fn date_format() {
    let t = UNIX_EPOCH + Duration::from_secs(1_316_637_185);
    assert_eq!(
        DateFormat::parse("%Y-%m-%d %H:%M:%S").render(t),
        "2011-09-21 20:33:05"
    );
    assert_eq!(
        DateFormat::parse("%d/%m/%y %%H %q at %H%").render(t),
        "21/09/11 %H %q at 20%"
    );
    assert_eq!(
        DateFormat::parse("%Y%m%d").render(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "20000229"
    );
}

#[test]
fn names() {
    assert_eq!(format!("{:>8}", level_name(Level::Info)), "    INFO");
    assert_eq!(format!("{:>8}", level_name(Level::Warn)), " WARNING");
    assert_eq!(
        display_target("glance_api", "glance_api", "glance-api"),
        "glance-api"
    );
    assert_eq!(
        display_target("glance_rs::http", "glance_api", "glance-api"),
        "glance::http"
    );
    assert_eq!(
        display_target("glance_rsx", "glance_api", "glance-api"),
        "glance_rsx"
    );
    assert_eq!(
        display_target("ureq::unit", "glance_api", "glance-api"),
        "ureq::unit"
    );
}

#[test]
fn file_target_init_twice_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut common = CommonOptions::new("test.conf", 0);
    common.log_dir = Some(dir.path().to_path_buf());
    common.log_file = Some("test.log".into());
    let h = init(&common, "glance-test").unwrap();
    assert_eq!(h.path(), Some(dir.path().join("test.log").as_path()));
    assert!(dir.path().join("test.log").is_file());
    // A second call must not panic.
    let h2 = init(&common, "glance-test").unwrap();
    assert!(!h2.is_installed());

    // Writing through the shared handle, then reopening after a rename (logrotate).
    if let Some((_, shared)) = &h.file {
        let mut w = SharedFile(shared.clone());
        w.write_all(b"one\n").unwrap();
        std::fs::rename(dir.path().join("test.log"), dir.path().join("test.log.1")).unwrap();
        h.reopen().unwrap();
        w.write_all(b"two\n").unwrap();
    }
    let old = std::fs::read_to_string(dir.path().join("test.log.1")).unwrap();
    let new = std::fs::read_to_string(dir.path().join("test.log")).unwrap();
    // (Other tests running in parallel may log into the file too.)
    assert!(old.contains("one\n"), "{old}");
    assert!(new.contains("two\n") && !new.contains("one\n"), "{new}");

    // No directory creation: a missing directory is an error naming the path.
    common.log_dir = Some(dir.path().join("missing"));
    let e = init(&common, "glance-test").unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "cannot open log file {}",
            dir.path().join("missing/test.log").display()
        )),
        "{e}"
    );
}
