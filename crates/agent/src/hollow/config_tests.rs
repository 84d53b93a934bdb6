//! Unit tests of the hollow-node flag parsers: good forms and the errors bad ones give.

use super::*;

fn check_err<T: std::fmt::Debug>(result: Result<T, ConfigError>, expect: &str) {
    let err = result.expect_err("should fail").to_string();
    assert!(err.contains(expect), "{err:?} does not contain {expect:?}");
}

#[test]
fn labels_parse() {
    let l = parse_labels("zone=a, topology.kubernetes.io/region=eu-1,empty=").unwrap();
    assert_eq!(l["zone"], "a");
    assert_eq!(l["topology.kubernetes.io/region"], "eu-1");
    assert_eq!(l["empty"], "");
    assert!(parse_labels("").unwrap().is_empty());
}

#[test]
fn bad_labels_say_why() {
    check_err(parse_labels("novalue"), "invalid label \"novalue\": expected key=value");
    check_err(parse_labels("a=b c"), "value: \"b c\" must consist of alphanumeric");
    check_err(parse_labels("-a=b"), "key: \"-a\" must consist");
    check_err(parse_labels("Bad_Prefix/a=b"), "key: prefix part \"Bad_Prefix\" must consist of lower case");
    check_err(parse_labels(&format!("a={}", "x".repeat(64))), "no more than 63 characters");
    check_err(parse_labels("a=1,a=2"), "key given twice");
    check_err(parse_labels("/a=1"), "prefix part must be non-empty");
}

#[test]
fn taints_parse() {
    let t = parse_taints("dedicated=infra:NoSchedule,gpu:NoExecute,x=y:PreferNoSchedule").unwrap();
    assert_eq!(
        t,
        [
            Taint { key: "dedicated".into(), value: "infra".into(), effect: "NoSchedule".into() },
            Taint { key: "gpu".into(), value: "".into(), effect: "NoExecute".into() },
            Taint { key: "x".into(), value: "y".into(), effect: "PreferNoSchedule".into() },
        ]
    );
}

#[test]
fn bad_taints_say_why() {
    check_err(parse_taints("a=b"), "expected key=value:Effect");
    check_err(parse_taints("a=b:Sometimes"), "effect \"Sometimes\" is not one of NoSchedule");
    check_err(parse_taints("=b:NoSchedule"), "key: name part must be non-empty");
    check_err(parse_taints("a=b:NoSchedule,a=c:NoSchedule"), "the same key and effect given twice");
}

#[test]
fn capacity_merges_over_defaults() {
    let c = parse_capacity("cpu=8,nvidia.com/gpu=4").unwrap();
    assert_eq!(c["cpu"], "8");
    assert_eq!(c["memory"], "256Gi");
    assert_eq!(c["pods"], "110");
    assert_eq!(c["nvidia.com/gpu"], "4");
    assert_eq!(parse_capacity("").unwrap(), default_capacity());
}

#[test]
fn bad_capacity_says_why() {
    check_err(parse_capacity("cpu"), "invalid capacity \"cpu\": expected resource=quantity");
    check_err(parse_capacity("cpu=lots"), "invalid quantity \"lots\"");
    check_err(parse_capacity("memory=12XB"), "unknown suffix");
    check_err(parse_capacity("cpu=-1"), "must not be negative");
    check_err(parse_capacity("nvidia.com/gpu=500m"), "extended resources must be whole numbers");
    check_err(parse_capacity("cpu=1,cpu=2"), "resource given twice");
}

#[test]
fn quantities_in_nano_units() {
    let cases: &[(&str, i128)] = &[
        ("1", NANO),
        ("100m", NANO / 10),
        ("1.5", 3 * NANO / 2),
        ("1Ki", 1024 * NANO),
        ("256Gi", 256 * (1 << 30) * NANO),
        ("2k", 2000 * NANO),
        ("1e3", 1000 * NANO),
        ("1E", 1_000_000_000_000_000_000 * NANO),
        ("5n", 5),
        ("1.5n", 2),
        ("0", 0),
        ("-2", -2 * NANO),
        ("+2", 2 * NANO),
    ];
    for (input, expect) in cases {
        assert_eq!(parse_quantity(input), Ok(*expect), "{input}");
    }
    for bad in ["", ".", "1..2", "m", "1Q", "1e", "1e99", "99999999999999999999999999999999999999999"] {
        assert!(parse_quantity(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
    assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    for bad in ["", "5", "1d", "ms", "-1s", "1.2.3s"] {
        check_err(parse_duration(bad), "invalid duration");
    }
}

#[test]
fn config_validation() {
    assert!(HollowConfig::default().validate().is_ok());
    let c = HollowConfig { nodes: 0, ..HollowConfig::default() };
    check_err(c.validate(), "--nodes must be at least 1");
    let c = HollowConfig { node_name_prefix: "Hollow_".into(), ..HollowConfig::default() };
    check_err(c.validate(), "node name \"Hollow_0\" from --node-name-prefix is not a valid node name");
    assert_eq!(HollowConfig::default().node_name(7), "hollow-node-7");
}
