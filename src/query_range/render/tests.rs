use super::*;
use crate::model::Labels;
use crate::query_range::parse_value;

#[test]
fn values_like_go_format_float() {
    let f = |v: f64| {
        let mut s = String::new();
        format_value(v, &mut s);
        s
    };
    assert_eq!(f(0.25), "0.25");
    assert_eq!(f(1.0), "1");
    assert_eq!(f(-0.0), "-0");
    assert_eq!(f(1e21), "1000000000000000000000");
    assert_eq!(f(1e-7), "0.0000001");
    assert_eq!(f(0.1 + 0.2), "0.30000000000000004");
    assert_eq!(f(f64::NAN), "NaN");
    assert_eq!(f(f64::INFINITY), "+Inf");
    assert_eq!(f(f64::NEG_INFINITY), "-Inf");
    assert_eq!(f(123456789.123), "123456789.123");
    // ties between two shortest candidates: Go rounds to the even digit where std's
    // Display (the previous implementation) rounded up; outputs of Go 1.26's FormatFloat
    for (bits, go) in [
        (0x42ea_8090_bb0f_6d84_u64, "233115890514796.12"),
        (0xc31c_b54f_6b43_4481, "-2020163013628192.2"),
        (0x4318_6486_17b9_f199, "1716481631878246.2"),
        (0xc2d9_160c_2c1b_5228, "-110329936768328.62"),
        (0xc2dc_8a06_bcad_6008, "-125516576372096.12"),
        (0x4306_6d13_de51_1b02, "789047698662240.2"),
    ] {
        assert_eq!(f(f64::from_bits(bits)), go, "bits {bits:#x}");
    }
}

#[test]
fn body_matches_prometheus_rendering() {
    let s = [Series {
        labels: Labels::from_pairs([("pod", "a<b>&\"c\""), ("cluster", "x")]),
        values: vec![Some(0.5), None, Some(2.0)],
    }];
    let steps = Steps {
        start: 1_761_868_800_000,
        step: 60_000,
        n: 3,
    };
    assert_eq!(
        render(s.iter(), &steps),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"cluster":"x","pod":"a\u003cb\u003e\u0026\"c\""},"values":[[1761868800,"0.5"],[1761868920,"2"]]}]}}"#
    );
    // timestamps and strings as `fmt` and serde_json (with Go's HTML escapes) write them
    for ms in [
        0,
        1,
        7,
        999,
        1_000,
        1_500,
        1_020,
        -1_500,
        -3,
        1_761_868_800_123,
        i64::MAX,
    ] {
        let mut t = String::new();
        format_timestamp(ms, &mut t);
        let a = ms.unsigned_abs();
        let sign = if ms < 0 { "-" } else { "" };
        let want = match a % 1000 {
            0 => format!("{sign}{}", a / 1000),
            f => format!("{sign}{}.{f:03}", a / 1000),
        };
        assert_eq!(t, want);
    }
    for v in [
        "",
        "plain-value_1.2",
        "tab\t",
        "\u{1}",
        "a\u{2028}b\u{2029}",
        "é€😀",
        "\\",
    ] {
        let mut got = Vec::new();
        json_string(v.as_bytes(), &mut got);
        let got = String::from_utf8(got).unwrap();
        let want = serde_json::to_string(v)
            .unwrap()
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        assert_eq!(got, want, "{v:?}");
    }
    assert_eq!(
        render([].iter(), &steps),
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
    );
}

#[test]
fn values_written_before_are_copied_as_they_were_written() {
    // series sharing a few values, far more text than is held at a time, against each
    // point written on its own
    let shared = [
        0.25,
        1.0,
        -0.0,
        1e-7,
        f64::NAN,
        f64::INFINITY,
        512.0,
        0.1 + 0.2,
    ];
    let steps = Steps {
        start: 1_761_868_800_000,
        step: 60_000,
        n: 60,
    };
    let series: Vec<Series> = (0..2_000u64)
        .map(|i| Series {
            labels: Labels::from_pairs([("pod", format!("p{i}"))]),
            values: (0..60u64)
                .map(|k| {
                    let pick = (i * 7 + k / (1 + i % 5)) % 10;
                    (pick < 8).then(|| shared[pick as usize])
                })
                .collect(),
        })
        .collect();
    let mut want = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            want.push(',');
        }
        let pod = s.labels.get("pod");
        want.push_str(&format!(r#"{{"metric":{{"pod":"{pod}"}},"values":["#));
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(k, v)| {
                let (mut t, mut v_text) = (String::new(), String::new());
                format_timestamp(steps.at(k), &mut t);
                format_value((*v)?, &mut v_text);
                Some(format!(r#"[{t},"{v_text}"]"#))
            })
            .collect();
        want.push_str(&points.join(","));
        want.push_str("]}");
    }
    want.push_str("]}}");
    assert!(
        want.len() > 2 * WRITE_AT,
        "the text is handed on several times"
    );
    assert_eq!(render(series.iter(), &steps), want);
}

#[test]
fn values_like_std_display_everywhere() {
    // std's Display prints the shortest round-tripping digits without an exponent, as Go's
    // 'f' format does: the reference for every magnitude, subnormals and extremes included,
    // except ties (below)
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut values = vec![
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        f64::MAX,
        f64::MIN,
        1e15,
        1e16,
        1e17,
        123456789012345680.0,
        0.001,
        0.0001,
        1e-5,
        1e23,
        4096.0 * 12345.0,
        2.5e-3,
    ];
    for _ in 0..200_000 {
        values.push(f64::from_bits(next()));
        // the values the catalog produces: rates, byte counts, fractions of a core
        let scale = 10f64.powi((next() % 40) as i32 - 20);
        values.push((next() % 1_000_000) as f64 * scale);
        values.push((next() % 100_000) as f64 / 60.0);
    }
    let mut ties = 0;
    for v in values.into_iter().filter(|v| v.is_finite()) {
        let mut s = String::new();
        format_value(v, &mut s);
        let std = format!("{v}");
        if s == std {
            continue;
        }
        // std rounds a tie between two shortest candidates up, Go (and zmij) to the even
        // digit: both round-trip, same length, one unit apart in the last digit
        ties += 1;
        assert_eq!(parse_value(&s).map(f64::to_bits), Some(v.to_bits()), "{s}");
        assert_eq!(s.len(), std.len(), "{s} vs {std}");
        let (a, b) = (s.as_bytes(), std.as_bytes());
        assert_eq!(a[..a.len() - 1], b[..b.len() - 1], "{s} vs {std}");
        assert_eq!(
            (a[a.len() - 1] - b'0') % 2,
            0,
            "{s} vs {std}: not the even digit"
        );
    }
    assert!(ties < 100, "{ties} ties");
}
