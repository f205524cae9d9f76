use super::*;

fn parse(text: &str) -> Ini {
    match Ini::parse(Path::new("test.conf"), text) {
        Ok(ini) => ini,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn parse_err(text: &str) -> String {
    match Ini::parse(Path::new("test.conf"), text) {
        Ok(_) => panic!("parse should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn sections_comments_and_separators() {
    let ini = parse(
        "# comment\n\
         ; another\n\
         \n\
         [DEFAULT]\n\
         verbose = True\n\
         bind_port: 9292\n\
         url = http://h:1/x?a=b\n\
         empty =\n\
         quoted = \"\"\n\
         inline = value ; comment\n\
         semi = a;b\n\
         \n\
         [app:glance-api]\n\
         paste.app_factory = glance.common.wsgi:app_factory\n\
         [pipeline:glance-api]\n\
         pipeline = versionnegotiation context apiv1app\n\
         [keystone_authtoken]\n\
         auth_host = 127.0.0.1\n",
    );
    assert_eq!(
        ini.section_names(),
        [
            "DEFAULT",
            "app:glance-api",
            "pipeline:glance-api",
            "keystone_authtoken"
        ]
    );
    let d = ini.defaults();
    assert_eq!(d.string("verbose", ""), "True");
    assert_eq!(d.string("bind_port", ""), "9292");
    assert_eq!(d.string("url", ""), "http://h:1/x?a=b");
    assert_eq!(d.opt_string("empty"), None);
    assert_eq!(d.opt_string("quoted"), None);
    assert_eq!(d.string("inline", ""), "value");
    assert_eq!(d.string("semi", ""), "a;b");
    assert_eq!(
        ini.section("pipeline:glance-api").string("pipeline", ""),
        "versionnegotiation context apiv1app"
    );
    assert_eq!(ini.keys("keystone_authtoken"), ["auth_host"]);
    let v = ini.get(DEFAULT, "bind_port").map(|v| v.origin);
    assert_eq!(
        v,
        Some(Origin::File {
            path: "test.conf".into(),
            line: 6
        })
    );
}

#[test]
fn continuation_lines() {
    let ini = parse(
        "[DEFAULT]\n\
         long = first\n\
         \x20   second\n\
         # a comment at column 0 does not end it\n\
         \tthird\n\
         next = 1\n",
    );
    assert_eq!(ini.defaults().string("long", ""), "first\nsecond\nthird");
    assert_eq!(ini.defaults().string("next", ""), "1");
    let e = parse_err("[DEFAULT]\n  orphan\n");
    assert!(e.starts_with("test.conf:2: indented line"), "{e}");
}

#[test]
fn malformed_lines_name_the_line() {
    let e = parse_err("[DEFAULT]\nverbose = True\nthis is not an option\n");
    assert!(e.starts_with("test.conf:3: expected `key = value`"), "{e}");
    assert!(e.contains("\"this is not an option\""), "{e}");
    let e = parse_err("verbose = True\n");
    assert!(
        e.starts_with("test.conf:1: option \"verbose\" before any"),
        "{e}"
    );
    let e = parse_err("[DEFAULT\n");
    assert!(e.starts_with("test.conf:1: section header"), "{e}");
    let e = parse_err("[DEFAULT]\n= x\n");
    assert!(e.starts_with("test.conf:2: option without a name"), "{e}");
    let e = parse_err("[DEFAULT] junk\n");
    assert!(e.starts_with("test.conf:1: unexpected text"), "{e}");
}

#[test]
fn default_fallback_and_usage_tracking() {
    let ini = parse(
        "[DEFAULT]\n\
         a = 1\n\
         b = 2\n\
         unused = 3\n\
         [keystone_authtoken]\n\
         b = 20\n\
         [filter:context]\n\
         context_class = glance.registry.context.RequestContext\n",
    );
    let ks = ini.section("keystone_authtoken");
    assert_eq!(ks.string("a", ""), "1");
    assert_eq!(ks.string("b", ""), "20");
    assert_eq!(ini.defaults().string("missing", "dflt"), "dflt");
    assert_eq!(
        ini.unknown_options(),
        [
            "unknown option 'b' in test.conf:3, ignored",
            "unknown option 'unused' in test.conf:4, ignored"
        ]
    );
    assert_eq!(
        ini.unknown_options_except(|k| k == "b"),
        ["unknown option 'unused' in test.conf:4, ignored"]
    );
    assert_eq!(
        ini.requested(),
        [
            ("DEFAULT".to_string(), "missing".to_string()),
            ("keystone_authtoken".to_string(), "a".to_string()),
            ("keystone_authtoken".to_string(), "b".to_string()),
        ]
    );
}

#[test]
fn duplicates_and_repeated_sections() {
    let ini = parse("[DEFAULT]\nx = 1\n[s]\ny = 1\n[DEFAULT]\nx = 2\n");
    assert_eq!(ini.defaults().string("x", ""), "2");
    assert_eq!(ini.section_names(), ["DEFAULT", "s"]);
    assert_eq!(ini.parse_warnings().len(), 1);
    assert!(ini.parse_warnings()[0].contains("test.conf:2 and line 6"));
}

#[test]
fn overrides_win_and_name_the_flag() {
    let mut ini = parse("[DEFAULT]\nbind_port = 1\n");
    ini.set_override("bind_port", "x", "--bind-port");
    let e = ini.defaults().port("bind_port", 0).unwrap_err().to_string();
    assert_eq!(
        e,
        "command line (--bind-port): bind_port: \"x\" is not a port number"
    );
    assert!(ini.unknown_options().is_empty());
}

#[test]
fn getter_errors_name_file_line_key_and_value() {
    let ini = parse(
        "[DEFAULT]\n\
         bind_port = abc\n\
         big_port = 70000\n\
         verbose = Ture\n\
         workers = -1\n\
         zero = 0\n\
         timeout = 1.5\n\
         strategy = ldap\n\
         ok_bool = yes\n\
         off_bool = OFF\n\
         ok_secs = 30\n",
    );
    let d = ini.defaults();
    let msg = |r: Result<String>| match r {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        msg(d.port("bind_port", 1).map(|v| v.to_string())),
        "test.conf:2: bind_port: \"abc\" is not a port number"
    );
    assert_eq!(
        msg(d.port("big_port", 1).map(|v| v.to_string())),
        "test.conf:3: big_port: \"70000\" is not a port number"
    );
    assert_eq!(
        msg(d.bool("verbose", false).map(|v| v.to_string())),
        "test.conf:4: verbose: \"Ture\" is not a boolean (use True or False)"
    );
    assert_eq!(
        msg(d.u64("workers", 1).map(|v| v.to_string())),
        "test.conf:5: workers: \"-1\" is not a non-negative whole number"
    );
    assert_eq!(
        msg(d.usize_in("zero", 1, 1..=usize::MAX).map(|v| v.to_string())),
        "test.conf:6: zero: \"0\" must be at least 1"
    );
    assert_eq!(
        msg(d.u64_in("zero", 1, 4096..=8192).map(|v| v.to_string())),
        "test.conf:6: zero: \"0\" must be between 4096 and 8192"
    );
    assert_eq!(
        msg(d.seconds("timeout", 1).map(|v| format!("{v:?}"))),
        "test.conf:7: timeout: \"1.5\" is not a whole number of seconds"
    );
    assert_eq!(
        msg(d.seconds_in("timeout", 1, 1..=60).map(|v| format!("{v:?}"))),
        "test.conf:7: timeout: \"1.5\" is not a whole number of seconds"
    );
    assert_eq!(
        msg(d.seconds_in("zero", 1, 1..=60).map(|v| format!("{v:?}"))),
        "test.conf:6: zero: \"0\" must be between 1 and 60"
    );
    assert_eq!(
        msg(d
            .seconds_in("ok_secs", 1, 31..=u64::MAX)
            .map(|v| format!("{v:?}"))),
        "test.conf:11: ok_secs: \"30\" must be at least 31"
    );
    assert_eq!(
        d.seconds_in("ok_secs", 1, 0..=30).unwrap(),
        Duration::from_secs(30)
    );
    assert_eq!(
        d.seconds_in("absent", 7, 1..=2).unwrap(),
        Duration::from_secs(7)
    );
    assert_eq!(
        msg(d.choice("strategy", "noauth", &["noauth", "keystone"])),
        "test.conf:8: strategy: \"ldap\" is not one of: noauth, keystone"
    );
    assert!(d.bool("ok_bool", false).unwrap());
    assert!(!d.bool("off_bool", true).unwrap());
    assert!(d.bool("absent", true).unwrap());
    assert_eq!(d.seconds("ok_secs", 1).unwrap(), Duration::from_secs(30));
    assert_eq!(d.port("absent", 9191).unwrap(), 9191);
    assert_eq!(d.u64("zero", 5).unwrap(), 0);
}
