//! SeaweedFS's S3 gateway from tests/common/servers.rs (`Weed`), which the S3 store tests of
//! issue 20 image into, proven with curl alone before any code under test meets it: it listens
//! on 127.0.0.1 only, refuses anonymous and wrongly signed requests, stores and lists an
//! object, runs a multipart upload to the end and aborts another (ListMultipartUploads shows
//! it until then), and keeps its objects across a kill and restart.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::noise;
use common::servers::{is_loopback_v4, listen_addresses, Weed};
use std::process::Command;
use std::time::Instant;

/// The ETag response header of a `curl -D` header dump.
fn etag(headers: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("etag")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no ETag in {headers}"))
}

/// The text of the first `<tag>` in `xml`.
fn tag(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    let end = start + xml[start..].find('<').unwrap();
    xml[start..end].to_string()
}

#[test]
fn weed_serves_s3_on_loopback() {
    let t0 = Instant::now();
    let Some(mut weed) = Weed::start() else {
        return;
    };
    eprintln!("Weed::start() took {:?}", t0.elapsed());
    let work = tempfile::tempdir().unwrap();

    for port in weed.ports() {
        let addrs = listen_addresses(port);
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| is_loopback_v4(a)),
            "weed's port {port} listens on {addrs:?}, not on 127.0.0.1 alone"
        );
    }
    assert_eq!(weed.env().len(), 4);
    assert!(weed.objects().is_empty(), "{:?}", weed.objects());

    // one small object: PUT, list, HEAD, GET, ranged GET
    let small = noise(1000, 1);
    weed.put("smoke/small.bin", &small);
    assert_eq!(weed.objects(), vec![("smoke/small.bin".to_string(), 1000)]);
    assert_eq!(weed.size("smoke/small.bin"), Some(1000));
    assert_eq!(weed.get("smoke/small.bin").unwrap(), small);
    let (status, part) = weed.curl_with("GET", "smoke/small.bin", &["-r", "100-199"]);
    assert_eq!((status, part.as_slice()), (206, &small[100..200]));
    assert_eq!(weed.get("smoke/missing"), None);

    // anonymous, wrongly signed, and into a bucket that does not exist
    let url = format!("{}/{}/smoke/small.bin", weed.endpoint(), weed.bucket());
    let code = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(code(&[&url]), "403");
    let wrong = format!("{}:not-the-secret", weed.access_key());
    let sig = "aws:amz:us-east-1:s3";
    assert_eq!(code(&["--aws-sigv4", sig, "--user", &wrong, &url]), "403");
    let right = format!("{}:{}", weed.access_key(), weed.secret_key());
    let elsewhere = format!("{}/no-such-bucket/x", weed.endpoint());
    let sha = "x-amz-content-sha256: UNSIGNED-PAYLOAD";
    let args = ["--aws-sigv4", sig, "--user", &right, "-H", sha];
    let put_elsewhere = [&args[..], &["-X", "PUT", "--data-binary", "x", &elsewhere]].concat();
    assert_eq!(code(&put_elsewhere), "404");

    // a multipart upload: a 5 MiB part (the least but the last may be) and a small one
    let parts = [noise(5 << 20, 2), noise(3000, 3)];
    let (status, body) = weed.curl("POST", "smoke/multi.bin?uploads");
    let xml = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{xml}");
    let id = tag(&xml, "UploadId");
    assert_eq!(
        weed.uploads_with_ids(),
        vec![("smoke/multi.bin".to_string(), id.clone())]
    );
    let mut complete = String::from("<CompleteMultipartUpload>");
    for (n, data) in parts.iter().enumerate() {
        let file = work.path().join(format!("part{n}"));
        let headers = work.path().join(format!("part{n}.headers"));
        std::fs::write(&file, data).unwrap();
        let (status, body) = weed.curl_with(
            "PUT",
            &format!("smoke/multi.bin?partNumber={}&uploadId={id}", n + 1),
            &[
                "-T",
                file.to_str().unwrap(),
                "-D",
                headers.to_str().unwrap(),
            ],
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let etag = etag(&std::fs::read_to_string(&headers).unwrap());
        complete.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
            n + 1
        ));
    }
    complete.push_str("</CompleteMultipartUpload>");
    let (status, body) = weed.curl_with(
        "POST",
        &format!("smoke/multi.bin?uploadId={id}"),
        &["--data-binary", &complete],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    assert_eq!(weed.get("smoke/multi.bin").unwrap(), parts.concat());

    // another, aborted: gone from the uploads, no object
    let (status, body) = weed.curl("POST", "smoke/aborted.bin?uploads");
    assert_eq!(status, 200);
    let id = tag(&String::from_utf8_lossy(&body), "UploadId");
    let file = work.path().join("part0");
    let (status, _) = weed.curl_with(
        "PUT",
        &format!("smoke/aborted.bin?partNumber=1&uploadId={id}"),
        &["-T", file.to_str().unwrap()],
    );
    assert_eq!(status, 200);
    assert_eq!(weed.uploads(), vec!["smoke/aborted.bin".to_string()]);
    let (status, body) = weed.curl("DELETE", &format!("smoke/aborted.bin?uploadId={id}"));
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    let total = 5 << 20 | 3000;
    assert_eq!(
        weed.objects(),
        vec![
            ("smoke/multi.bin".to_string(), total),
            ("smoke/small.bin".to_string(), 1000)
        ]
    );

    // killed, nothing answers; restarted, the objects are back and writes work
    weed.stop();
    assert!(weed.pids().is_empty());
    assert_eq!(weed.curl("GET", "?list-type=2").0, 0);
    let t1 = Instant::now();
    weed.restart();
    eprintln!("Weed::restart() took {:?}", t1.elapsed());
    assert_eq!(weed.get("smoke/small.bin").unwrap(), small);
    assert_eq!(weed.get("smoke/multi.bin").unwrap(), parts.concat());
    weed.delete("smoke/small.bin");
    assert_eq!(weed.objects(), vec![("smoke/multi.bin".to_string(), total)]);

    let pids = weed.pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    drop(weed);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "weed {pid} outlived its guard"
        );
    }
}
