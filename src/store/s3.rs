//! Images in S3-compatible object storage: `s3://bucket/prefix/disk.lbi` wherever an image is
//! written or read. SeaweedFS, Ceph RGW, MinIO, Garage and the clouds all speak this protocol.
//!
//! **Where and who.** The endpoint, region and credentials come from the environment, as the
//! AWS tools read them: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), `AWS_REGION` (or
//! `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`;
//! what they leave out is read from the profile `AWS_PROFILE` (else `default`) of
//! `~/.aws/credentials` and `~/.aws/config` (`AWS_SHARED_CREDENTIALS_FILE`,
//! `AWS_CONFIG_FILE`), and then from the rescue system's boot credentials
//! (`lifeboat.credentials=`, [`super::net::CREDENTIALS`]: `aws_access_key_id=`,
//! `aws_secret_access_key=`, `aws_session_token=`, `aws_region=`, `aws_endpoint_url=`
//! lines). Without an endpoint it is AWS (`https://s3.REGION.amazonaws.com`).
//! Requests are path-style (`http://host/bucket/key`) when the endpoint is an address or a
//! name without a dot (`localhost`, a NAS on the LAN), as self-hosted stores need, or when
//! `AWS_S3_FORCE_PATH_STYLE=true`; otherwise virtual-hosted (`https://bucket.host/key`).
//!
//! **Requests** are signed with AWS Signature Version 4 (HMAC-SHA256 from `ring`, which TLS
//! already brings), over our own HTTP client ([`super::http`]). Every body sent is signed with
//! its SHA-256, so the server refuses a part that arrives other than it was sent.
//!
//! **Writing** ([`Upload`]) is one multipart upload: the image streams out in parts of 16 MiB
//! (growing for huge images, to stay under the 10,000 parts S3 allows), two in flight while
//! the next is filled. The object appears only when the upload is completed, after the last
//! byte: an interrupted run leaves no object, only an unfinished upload, which is aborted when
//! the writer is dropped and which [`clean_uploads`] removes after a crash. A part that fails
//! is sent again (with the same pause and limit as reads, [`super::http::retry_for`]).
//!
//! **Reading** is [`super::http::HttpFile`] with signed range requests: the image reader asks
//! for the header, the footer, the index and then the chunks it needs.
//!
//! Nothing here prints.

use super::http::{self, Failure, HttpFile, Response, Url};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// True when `p` is an `s3://` URL.
pub fn is_s3(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// An object's place: `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Path {
    /// The bucket.
    pub bucket: String,
    /// The key (may be empty: the whole bucket).
    pub key: String,
}

impl S3Path {
    /// Parses `s3://bucket/key`; the message says what is wrong.
    pub fn parse(s: &str) -> Result<S3Path, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{s:?} is not an s3:// URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !ok {
            return Err(format!(
                "{s:?}: {bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, \
                 dots and hyphens)"
            ));
        }
        if key.len() > 1024 || key.contains(|c: char| c.is_control()) {
            return Err(format!(
                "{s:?}: the key is too long or has control characters"
            ));
        }
        Ok(S3Path {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// Parses a path that [`is_s3`].
    pub fn of(p: &Path) -> io::Result<S3Path> {
        S3Path::parse(&p.to_string_lossy())
            .map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))
    }
}

impl std::fmt::Display for S3Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Where the store is and who asks: see the module doc.
#[derive(Clone)]
pub struct Config {
    endpoint: Url,
    region: String,
    access_key: String,
    secret_key: String,
    token: Option<String>,
    path_style: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint.to_string())
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// The store the menu's form chose ([`set_session`]): it wins over the environment.
static SESSION: std::sync::Mutex<Option<Config>> = std::sync::Mutex::new(None);

/// Makes `cfg` the configuration of every S3 request of this process (the menu's S3 form),
/// instead of the environment and the AWS files; `None` goes back to them.
pub fn set_session(cfg: Option<Config>) {
    *SESSION.lock().unwrap_or_else(|e| e.into_inner()) = cfg;
}

/// `[profile]` sections of an AWS ini file: the keys of `section`, lower-cased.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside {
            if let Some((k, v)) = l.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

impl Config {
    /// Reads the configuration from the environment and the AWS files (module doc). Missing
    /// credentials are an error that says where they are looked for.
    pub fn from_env() -> io::Result<Config> {
        if let Some(c) = SESSION.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(c);
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let home = env("HOME").unwrap_or_else(|| "/root".into());
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let creds_file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&home).join(".aws/credentials"));
        let config_file = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&home).join(".aws/config"));
        let creds = std::fs::read_to_string(&creds_file)
            .map(|t| ini_section(&t, &profile))
            .unwrap_or_default();
        let config_section = if profile == "default" {
            "default".to_string()
        } else {
            format!("profile {profile}")
        };
        let config = std::fs::read_to_string(&config_file)
            .map(|t| ini_section(&t, &config_section))
            .unwrap_or_default();
        let from = |list: &[(String, String)], k: &str| {
            list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        // the rescue system's boot credentials (lifeboat.credentials=): key=value lines
        let boot: Vec<(String, String)> = std::fs::read_to_string(super::net::CREDENTIALS)
            .map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().split_once('='))
                    .filter(|(k, _)| super::net::S3_KEYS.contains(&k.trim()))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let creds: Vec<(String, String)> = creds.into_iter().chain(boot.iter().cloned()).collect();
        let config: Vec<(String, String)> = config
            .into_iter()
            .chain(
                boot.iter()
                    .map(|(k, v)| (k.trim_start_matches("aws_").to_string(), v.clone())),
            )
            .collect();
        let access_key = env("AWS_ACCESS_KEY_ID").or_else(|| from(&creds, "aws_access_key_id"));
        let secret_key =
            env("AWS_SECRET_ACCESS_KEY").or_else(|| from(&creds, "aws_secret_access_key"));
        let (Some(access_key), Some(secret_key)) = (access_key, secret_key) else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put \
                     them in the profile [{profile}] of {}",
                    creds_file.display()
                ),
            ));
        };
        let token = env("AWS_SESSION_TOKEN").or_else(|| from(&creds, "aws_session_token"));
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| from(&config, "region"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| from(&config, "endpoint_url"))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let force = env("AWS_S3_FORCE_PATH_STYLE").is_some_and(|v| v == "true" || v == "1");
        Config::new(&endpoint, &region, &access_key, &secret_key, token, force)
    }

    /// A configuration from its parts (`force_path_style` as `AWS_S3_FORCE_PATH_STYLE`).
    pub fn new(
        endpoint: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
        token: Option<String>,
        force_path_style: bool,
    ) -> io::Result<Config> {
        let mut url = Url::parse(endpoint).map_err(|m| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the S3 endpoint (AWS_ENDPOINT_URL): {m}"),
            )
        })?;
        while url.path.ends_with('/') {
            url.path.pop();
        }
        let h = &url.host;
        let local = h.parse::<std::net::IpAddr>().is_ok() || !h.contains('.');
        Ok(Config {
            path_style: force_path_style || local,
            endpoint: url,
            region: region.to_string(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            token,
        })
    }
}

/// S3's encoding of a URI part: every byte but `A-Za-z0-9-._~` as `%XX`; `/` too unless
/// `keep_slash`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lower-case hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of `data`, in hex: a signed payload's hash.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` of a Unix time, in UTC.
fn amz_dates(unix: u64) -> (String, String) {
    // "YYYYMMDD-HHMMSS"
    let stamp = crate::jobs::chain::utc_stamp(unix);
    let (date, time) = stamp.split_once('-').unwrap_or((&stamp, "000000"));
    (date.to_string(), format!("{date}T{time}Z"))
}

/// The SHA-256 of an empty body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The most bytes of an answer to a control request (a listing page is well under this).
const MAX_ANSWER: usize = 16 << 20;

/// A client of one store.
#[derive(Debug)]
pub struct Client {
    cfg: Config,
}

impl Client {
    /// A client from the environment ([`Config::from_env`]).
    pub fn from_env() -> io::Result<Arc<Client>> {
        Ok(Arc::new(Client {
            cfg: Config::from_env()?,
        }))
    }

    /// A client of `cfg`.
    pub fn new(cfg: Config) -> Arc<Client> {
        Arc::new(Client { cfg })
    }

    /// The URL of `key` in `bucket` with the (already encoded) `query`.
    fn url(&self, bucket: &str, key: &str, query: &str) -> Url {
        let mut u = self.cfg.endpoint.clone();
        let key = uri_encode(key, true);
        u.path = if self.cfg.path_style {
            format!("{}/{bucket}/{key}", u.path)
        } else {
            u.host = format!("{bucket}.{}", u.host);
            format!("{}/{key}", u.path)
        };
        if !query.is_empty() {
            u.path = format!("{}?{query}", u.path);
        }
        u
    }

    /// The signature headers of a request of `method` to `url` whose body hashes to
    /// `payload` (SigV4), plus `extra` headers, which are signed too.
    fn sign(
        &self,
        method: &str,
        url: &Url,
        payload: &str,
        extra: &[(String, String)],
    ) -> Vec<(String, String)> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.sign_at(now, method, url, payload, extra)
    }

    /// [`Client::sign`] at the Unix time `now`.
    fn sign_at(
        &self,
        now: u64,
        method: &str,
        url: &Url,
        payload: &str,
        extra: &[(String, String)],
    ) -> Vec<(String, String)> {
        let (date, stamp) = amz_dates(now);
        let (path, query) = url.path.split_once('?').unwrap_or((&url.path, ""));
        // the query's pairs, sorted; each already encoded by whoever built the URL
        let mut pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        pairs.sort();
        let canonical_query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), url.host_header()),
            ("x-amz-content-sha256".into(), payload.to_string()),
            ("x-amz-date".into(), stamp.clone()),
        ];
        if let Some(t) = &self.cfg.token {
            headers.push(("x-amz-security-token".into(), t.clone()));
        }
        for (k, v) in extra {
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        headers.sort();
        let signed = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let canonical = format!(
            "{method}\n{}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload}",
            if path.is_empty() { "/" } else { path }
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.cfg.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let mut k = hmac(
            format!("AWS4{}", self.cfg.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.cfg.region.as_bytes(), b"s3", b"aws4_request"] {
            k = hmac(&k, part);
        }
        let signature = hex(&hmac(&k, to_sign.as_bytes()));
        let mut out: Vec<(String, String)> =
            headers.into_iter().filter(|(k, _)| k != "host").collect();
        out.push((
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.cfg.access_key
            ),
        ));
        out
    }

    /// A signer for [`HttpFile`]'s GETs.
    fn signer(self: &Arc<Self>) -> http::Signer {
        let me = Arc::clone(self);
        Arc::new(move |url: &Url| me.sign("GET", url, EMPTY_SHA256, &[]))
    }

    /// One request, sent again after a drop or a 5xx answer (pauses doubling from half a
    /// second, for at most [`http::retry_for`]). Answers other than 2xx are errors built by
    /// [`s3_error`], naming `what`.
    fn call(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &str,
        body: &[u8],
    ) -> io::Result<Response> {
        self.call_with(method, bucket, key, query, &[], body)
    }

    /// [`Client::call`] with `extra` headers, which are signed too.
    fn call_with(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &str,
        extra: &[(String, String)],
        body: &[u8],
    ) -> io::Result<Response> {
        let url = self.url(bucket, key, query);
        let payload = if body.is_empty() {
            EMPTY_SHA256.to_string()
        } else {
            sha256_hex(body)
        };
        let what = S3Path {
            bucket: bucket.into(),
            key: key.into(),
        };
        let deadline = Instant::now() + http::retry_for();
        let mut pause = Duration::from_millis(500);
        loop {
            let headers = self.sign(method, &url, &payload, extra);
            let (err, server_failed) =
                match http::exchange(&url, method, &headers, body, MAX_ANSWER) {
                    Ok(r) if (200..300).contains(&r.status) => return Ok(r),
                    // a 501 (NotImplemented) is an answer, not a failure: not retried
                    Ok(r)
                        if (r.status >= 500
                            && r.status != 501
                            && s3_code(&r.body).as_deref() != Some("NotImplemented"))
                            || s3_code(&r.body).as_deref() == Some("RequestTimeout") =>
                    {
                        (s3_error(&what, &r), r.status >= 500)
                    }
                    Ok(r) => return Err(s3_error(&what, &r)),
                    Err(Failure::Permanent(e)) => return Err(e),
                    Err(Failure::Transient(e)) => (e, false),
                };
            if Instant::now() + pause > deadline {
                return Err(io::Error::new(
                    err.kind(),
                    format!(
                        "{err} (retried for {} s){}",
                        http::retry_for().as_secs(),
                        gave_up_hint(method, server_failed)
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(8));
        }
    }

    /// The size of `p`, or `None` when there is no such object.
    pub fn head(&self, p: &S3Path) -> io::Result<Option<u64>> {
        match self.call("HEAD", &p.bucket, &p.key, "", &[]) {
            Ok(r) => Ok(r.header("content-length").and_then(|v| v.parse().ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The size and ETag of `p`, or `None` when there is no such object.
    pub fn head_tagged(&self, p: &S3Path) -> io::Result<Option<(u64, String)>> {
        match self.call("HEAD", &p.bucket, &p.key, "", &[]) {
            Ok(r) => Ok(Some((
                r.header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                r.header("etag").unwrap_or_default().to_string(),
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes `first..=last` of `p`, only while its ETag is `etag` (else an error: it was
    /// replaced meanwhile).
    pub fn get_range_if(
        &self,
        p: &S3Path,
        (first, last): (u64, u64),
        etag: &str,
    ) -> io::Result<Vec<u8>> {
        let extra = [
            ("Range".to_string(), format!("bytes={first}-{last}")),
            ("If-Match".to_string(), etag.to_string()),
        ];
        let r = self.call_with("GET", &p.bucket, &p.key, "", &extra, &[])?;
        let want = last - first + 1;
        if r.body.len() as u64 != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{p}: asked for {want} bytes at {first}, got {}",
                    r.body.len()
                ),
            ));
        }
        Ok(r.body)
    }

    /// Stores `body` as `p` in one request (small objects).
    pub fn put(&self, p: &S3Path, body: &[u8]) -> io::Result<()> {
        self.call("PUT", &p.bucket, &p.key, "", body).map(|_| ())
    }

    /// Stores `body` as `p` unless an object of that name exists (`If-None-Match: *`): false
    /// when it does.
    pub fn put_new(&self, p: &S3Path, body: &[u8]) -> io::Result<bool> {
        let extra = [("If-None-Match".to_string(), "*".to_string())];
        match self.call_with("PUT", &p.bucket, &p.key, "", &extra, body) {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("412") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads the whole (small) object `p`.
    pub fn get(&self, p: &S3Path) -> io::Result<Vec<u8>> {
        self.call("GET", &p.bucket, &p.key, "", &[]).map(|r| r.body)
    }

    /// Deletes `p` (deleting what is not there is fine, as S3 says).
    pub fn delete(&self, p: &S3Path) -> io::Result<()> {
        match self.call("DELETE", &p.bucket, &p.key, "", &[]) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Every object whose key starts with `prefix` in `bucket`: (key, size), in key order.
    pub fn list(&self, bucket: &str, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("list-type=2&prefix={}", uri_encode(prefix, false));
            if let Some(t) = &token {
                q.push_str(&format!("&continuation-token={}", uri_encode(t, false)));
            }
            let r = self.call("GET", bucket, "", &q, &[])?;
            let text = String::from_utf8_lossy(&r.body);
            for c in xml_blocks(&text, "Contents") {
                let key = xml_value(c, "Key").unwrap_or_default();
                let size = xml_value(c, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                out.push((key, size));
            }
            let more = xml_value(&text, "IsTruncated").is_some_and(|v| v == "true");
            token = xml_value(&text, "NextContinuationToken");
            if !more || token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// The unfinished multipart uploads of keys starting with `prefix`: (key, upload ID).
    pub fn uploads(&self, bucket: &str, prefix: &str) -> io::Result<Vec<(String, String)>> {
        let q = format!("prefix={}&uploads=", uri_encode(prefix, false));
        let r = self.call("GET", bucket, "", &q, &[])?;
        let text = String::from_utf8_lossy(&r.body);
        Ok(xml_blocks(&text, "Upload")
            .into_iter()
            .filter_map(|u| Some((xml_value(u, "Key")?, xml_value(u, "UploadId")?)))
            .collect())
    }

    /// Starts a multipart upload of `p`; its upload ID.
    pub fn create_upload(&self, p: &S3Path) -> io::Result<String> {
        let r = self.call("POST", &p.bucket, &p.key, "uploads=", &[])?;
        xml_value(&String::from_utf8_lossy(&r.body), "UploadId").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{p}: the store started an upload without naming it"),
            )
        })
    }

    /// Sends part `n` (from 1) of upload `id`; its ETag.
    pub fn upload_part(&self, p: &S3Path, id: &str, n: u32, body: &[u8]) -> io::Result<String> {
        let q = format!("partNumber={n}&uploadId={}", uri_encode(id, false));
        let r = self.call("PUT", &p.bucket, &p.key, &q, body)?;
        r.header("etag").map(str::to_string).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{p}: the store took part {n} without an ETag"),
            )
        })
    }

    /// Makes part `n` (from 1) of upload `id` of `p` from bytes `first..=last` of the object
    /// `src`, copied by the store itself (UploadPartCopy), only while `src`'s ETag is `etag`;
    /// the part's ETag. A store that cannot copy parts answers with an error of kind
    /// `Unsupported`.
    pub fn upload_part_copy(
        &self,
        p: &S3Path,
        id: &str,
        n: u32,
        src: &S3Path,
        (first, last): (u64, u64),
        etag: &str,
    ) -> io::Result<String> {
        let q = format!("partNumber={n}&uploadId={}", uri_encode(id, false));
        let extra = [
            ("x-amz-copy-source-if-match".to_string(), etag.to_string()),
            (
                "x-amz-copy-source".to_string(),
                format!("/{}/{}", src.bucket, uri_encode(&src.key, true)),
            ),
            (
                "x-amz-copy-source-range".to_string(),
                format!("bytes={first}-{last}"),
            ),
        ];
        let r = self.call_with("PUT", &p.bucket, &p.key, &q, &extra, &[])?;
        // S3 may answer 200 and put an error in the body
        let text = String::from_utf8_lossy(&r.body);
        if text.contains("<Error>") {
            return Err(io::Error::other(format!(
                "{p}: copying part {n} failed: {}",
                error_words(&text)
            )));
        }
        xml_value(&text, "ETag").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{p}: the store copied part {n} without an ETag"),
            )
        })
    }

    /// Completes upload `id` of `p` from `parts` (number, ETag), in order: the object appears.
    pub fn complete_upload(&self, p: &S3Path, id: &str, parts: &[(u32, String)]) -> io::Result<()> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let q = format!("uploadId={}", uri_encode(id, false));
        let r = self.call("POST", &p.bucket, &p.key, &q, body.as_bytes())?;
        // S3 may answer 200 and put an error in the body
        let text = String::from_utf8_lossy(&r.body);
        if text.contains("<Error>") {
            return Err(io::Error::other(format!(
                "{p}: completing the upload failed: {}",
                error_words(&text)
            )));
        }
        Ok(())
    }

    /// Aborts upload `id` of `p`: its parts are deleted.
    pub fn abort_upload(&self, p: &S3Path, id: &str) -> io::Result<()> {
        let q = format!("uploadId={}", uri_encode(id, false));
        match self.call("DELETE", &p.bucket, &p.key, &q, &[]) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// What to add when writes kept failing with a server error: some stores (SeaweedFS among
/// them) answer every write to a bucket over its quota with a plain 500, which cannot be
/// told from a store that is unwell.
fn gave_up_hint(method: &str, server_failed: bool) -> &'static str {
    if server_failed && matches!(method, "PUT" | "POST") {
        "; a store that fails every write may be full or its bucket over its quota (SeaweedFS \
         answers so), or unwell: check its free space, quota and logs"
    } else {
        ""
    }
}

/// The `<Code>` of an S3 error answer.
fn s3_code(body: &[u8]) -> Option<String> {
    xml_value(&String::from_utf8_lossy(body), "Code")
}

/// "Code: Message" of an S3 error body.
fn error_words(text: &str) -> String {
    match (xml_value(text, "Code"), xml_value(text, "Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => String::new(),
    }
}

/// The error of an answer that is not 2xx: its kind from the status, its words from the
/// S3 error body.
fn s3_error(p: &S3Path, r: &Response) -> io::Error {
    let text = String::from_utf8_lossy(&r.body);
    let code = xml_value(&text, "Code").unwrap_or_default();
    let words = error_words(&text);
    let said = if words.is_empty() {
        r.reason.clone()
    } else {
        format!("{} ({words})", r.reason)
    };
    let (kind, m) = match r.status {
        404 if code == "NoSuchBucket" => (
            io::ErrorKind::NotFound,
            format!("no bucket {:?} on the S3 store ({said})", p.bucket),
        ),
        404 => (io::ErrorKind::NotFound, format!("{p}: not found ({said})")),
        401 | 403 => (
            io::ErrorKind::PermissionDenied,
            format!(
                "{p}: the S3 store refused access ({said}); check AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY and the bucket's policy"
            ),
        ),
        501 => (
            io::ErrorKind::Unsupported,
            format!("{p}: the S3 store cannot do this ({said})"),
        ),
        _ if code == "NotImplemented" => (
            io::ErrorKind::Unsupported,
            format!("{p}: the S3 store cannot do this ({said})"),
        ),
        _ if code == "QuotaExceeded" || code == "EntityTooLarge" || r.status == 507 => (
            io::ErrorKind::StorageFull,
            format!("{p}: the S3 store is full or over its quota ({said})"),
        ),
        _ => (
            io::ErrorKind::Other,
            format!("{p}: the S3 store answered {said}"),
        ),
    };
    io::Error::new(kind, m)
}

/// The text of every `<tag>…</tag>` element in `text` (not nested in itself).
fn xml_blocks<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>` element in `text`.
fn xml_value(text: &str, tag: &str) -> Option<String> {
    xml_blocks(text, tag).first().map(|v| xml_unescape(v))
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let ent = &after[1..end];
        let c = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Opens the object `path` for reading with signed range requests.
pub fn open(path: &Path) -> io::Result<HttpFile> {
    let p = S3Path::of(path)?;
    let client = Client::from_env()?;
    let url = client.url(&p.bucket, &p.key, "");
    let sign = client.signer();
    HttpFile::open_signed(url, p.to_string(), Some(sign)).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => io::Error::new(
            e.kind(),
            format!(
                "{e}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile in \
                 ~/.aws/credentials) and the bucket's policy"
            ),
        ),
        io::ErrorKind::NotFound => io::Error::new(
            e.kind(),
            format!(
                "no object {p} (or no bucket {:?}) on the S3 store",
                p.bucket
            ),
        ),
        _ => e,
    })
}

/// Stores `data` as the object `path` unless one of that name exists: false when it does.
pub fn put_new(path: &Path, data: &[u8]) -> io::Result<bool> {
    Client::from_env()?.put_new(&S3Path::of(path)?, data)
}

/// Stores `data` as the object `path` (replacing one of that name).
pub fn put(path: &Path, data: &[u8]) -> io::Result<()> {
    Client::from_env()?.put(&S3Path::of(path)?, data)
}

/// Reads all of the (small) object `path`.
pub fn get(path: &Path) -> io::Result<Vec<u8>> {
    Client::from_env()?.get(&S3Path::of(path)?)
}

/// The size of the object at `path`, or `None` when there is none.
pub fn size_of(path: &Path) -> io::Result<Option<u64>> {
    Client::from_env()?.head(&S3Path::of(path)?)
}

/// Deletes the object at `path`.
pub fn delete(path: &Path) -> io::Result<()> {
    Client::from_env()?.delete(&S3Path::of(path)?)
}

/// The objects directly in the "folder" `dir` (`s3://bucket/prefix`), as paths: those
/// whose key is the prefix, a `/`, and a name without another `/`.
pub fn list_folder(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(list_folder_sizes(dir)?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// [`list_folder`] with each object's size.
pub fn list_folder_sizes(dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let d = S3Path::of(dir)?;
    let prefix = if d.key.is_empty() || d.key.ends_with('/') {
        d.key.clone()
    } else {
        format!("{}/", d.key)
    };
    let client = Client::from_env()?;
    Ok(client
        .list(&d.bucket, &prefix)?
        .into_iter()
        .filter(|(k, _)| k.len() > prefix.len() && !k[prefix.len()..].contains('/'))
        .map(|(k, n)| (PathBuf::from(format!("s3://{}/{k}", d.bucket)), n))
        .collect())
}

/// Aborts every unfinished upload of the object `path` (left by a run that was killed):
/// how many there were.
pub fn clean_uploads(path: &Path) -> io::Result<usize> {
    let p = S3Path::of(path)?;
    let client = Client::from_env()?;
    let mut n = 0;
    for (key, id) in client.uploads(&p.bucket, &p.key)? {
        if key == p.key {
            client.abort_upload(&p, &id)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The size of part `n` (from 1): 16 MiB for the first 2,000 parts (31 GiB), 64 MiB for the
/// next 2,000 (125 GiB more), then 256 MiB: the 10,000 parts S3 allows hold an image of
/// 1.6 TiB, and the buffers (four parts) stay within 1 GiB of memory.
fn part_size(n: u32) -> usize {
    let step = (n.saturating_sub(1) / 2000).min(2);
    (16usize << 20) << (2 * step)
}

/// The most parts a multipart upload may have.
const MAX_PARTS: u32 = 10_000;

/// Parts sent at once.
const IN_FLIGHT: usize = 2;

/// The parts an [`Upload`] sent (number, ETag), and its first failure.
type Sent = (Vec<(u32, String)>, Option<io::Error>);

/// A part to send: its number and its bytes.
type Part = (u32, Vec<u8>);

/// One object being written by a multipart upload; see the module doc. Dropped unfinished,
/// the upload is aborted and no object appears.
pub struct Upload {
    client: Arc<Client>,
    path: S3Path,
    id: String,
    buf: Vec<u8>,
    next_part: u32,
    pos: u64,
    tx: Option<Sender<Part>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// The parts sent, and the first failure.
    state: Arc<Mutex<Sent>>,
    done: bool,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path.to_string())
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Starts writing the object at `path`.
    pub fn start(path: &Path) -> io::Result<Upload> {
        let p = S3Path::of(path)?;
        if p.key.is_empty() || p.key.ends_with('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{p}: an image needs a name after the bucket (s3://bucket/disk.lbi)"),
            ));
        }
        let client = Client::from_env()?;
        // an earlier run for this name that was killed (or lost the store) left its upload
        // unfinished: its parts are deleted now, so that they do not linger unseen. Best
        // effort: keys that may not list or abort uploads can still write an image.
        for (key, id) in client.uploads(&p.bucket, &p.key).unwrap_or_default() {
            if key == p.key {
                let _ = client.abort_upload(&p, &id);
            }
        }
        let id = client.create_upload(&p)?;
        let (tx, rx): (Sender<Part>, Receiver<Part>) = bounded(1);
        let state = Arc::new(Mutex::new((Vec::new(), None)));
        let workers = (0..IN_FLIGHT)
            .map(|_| {
                let (client, p, id, rx, state) = (
                    Arc::clone(&client),
                    p.clone(),
                    id.clone(),
                    rx.clone(),
                    Arc::clone(&state),
                );
                std::thread::spawn(move || {
                    for (n, data) in rx {
                        let failed = state.lock().unwrap_or_else(|e| e.into_inner()).1.is_some();
                        if failed {
                            continue; // drain: the upload is lost anyway
                        }
                        let r = client.upload_part(&p, &id, n, &data);
                        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                        match r {
                            Ok(etag) => st.0.push((n, etag)),
                            Err(e) => {
                                st.1.get_or_insert(e);
                            }
                        }
                    }
                })
            })
            .collect();
        Ok(Upload {
            client,
            path: p,
            id,
            buf: Vec::with_capacity(part_size(1)),
            next_part: 1,
            pos: 0,
            tx: Some(tx),
            workers,
            state,
            done: false,
        })
    }

    /// The first failure of a part, if any (taken: it is reported once).
    fn failure(&self) -> Option<io::Error> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .take()
    }

    /// Bytes written so far.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = part_size(self.next_part) - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.pos += n as u64;
            if self.buf.len() == part_size(self.next_part) {
                self.send_part()?;
            }
        }
        Ok(())
    }

    /// Hands the buffer to the senders as the next part.
    fn send_part(&mut self) -> io::Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        if self.next_part > MAX_PARTS {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("{}: more than {MAX_PARTS} parts, S3's limit", self.path),
            ));
        }
        let next = Vec::with_capacity(part_size(self.next_part + 1));
        let data = std::mem::replace(&mut self.buf, next);
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("upload closed"))?;
        tx.send((self.next_part, data))
            .map_err(|_| io::Error::other(format!("{}: the part senders stopped", self.path)))?;
        self.next_part += 1;
        Ok(())
    }

    /// Sends the last part, waits for every part and completes the upload: the object
    /// appears. Returns its size.
    pub fn finish(mut self) -> io::Result<u64> {
        if !self.buf.is_empty() || self.next_part == 1 {
            self.send_part()?;
        }
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let mut parts = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = st.1.take() {
                return Err(e);
            }
            std::mem::take(&mut st.0)
        };
        parts.sort();
        if parts.len() as u32 != self.next_part - 1 {
            return Err(io::Error::other(format!(
                "{}: {} of {} parts were sent",
                self.path,
                parts.len(),
                self.next_part - 1
            )));
        }
        self.client.complete_upload(&self.path, &self.id, &parts)?;
        self.done = true;
        Ok(self.pos)
    }
}

/// The first part of a [`replace_head`] upload, sent through this client; the store
/// copies the rest. At least S3's smallest part (5 MiB).
const HEAD_PART: u64 = 16 << 20;
/// The size of each part the store copies: under S3's 5 GiB limit for one part copy.
const COPY_PART: u64 = 1 << 30;

/// Replaces the first `head.len()` bytes of the object `path` with `head`, leaving the rest
/// as it is, and returns the object's size, which must not change. An object cannot be
/// written in place, so a new multipart upload of the same name is made: its first part
/// (`head`, then the object's own bytes up to 16 MiB) goes through this client, and the
/// store copies every other part from the object itself (UploadPartCopy), so a large image
/// is neither downloaded nor sent again. Every read and copy is made only while the object
/// is the one first seen (its ETag). The new object replaces the old one only when the
/// upload completes; on an error the upload is aborted and the old object stays. A small
/// object, or a store that cannot copy parts, is read and sent again whole instead.
pub fn replace_head(path: &Path, head: &[u8]) -> io::Result<u64> {
    let p = S3Path::of(path)?;
    let client = Client::from_env()?;
    let (len, etag) = client
        .head_tagged(&p)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{p}: not found")))?;
    if head.len() as u64 > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{p}: {} bytes cannot replace the head of an object of {len}",
                head.len()
            ),
        ));
    }
    let copied = if len > HEAD_PART && head.len() as u64 <= HEAD_PART && !etag.is_empty() {
        match copy_rest(&client, &p, head, len, &etag) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => None,
            r => Some(r?),
        }
    } else {
        None
    };
    let written = match copied {
        Some(n) => n,
        None => send_whole(path, head, len)?,
    };
    if written != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{p}: the object has {written} bytes after its header was rewritten, not {len}"
            ),
        ));
    }
    Ok(written)
}

/// [`replace_head`] through this client: the object read and sent again whole.
fn send_whole(path: &Path, head: &[u8], len: u64) -> io::Result<u64> {
    let src = open(path)?;
    let mut up = Upload::start(path)?;
    up.write_all(head)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut at = head.len() as u64;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        src.read_exact_at(&mut buf[..n], at)?;
        up.write_all(&buf[..n])?;
        at += n as u64;
    }
    up.finish()
}

/// [`replace_head`] with the store copying every part after the first, while the object's
/// ETag is `etag`; the new object's size, as the store reports it.
fn copy_rest(client: &Client, p: &S3Path, head: &[u8], len: u64, etag: &str) -> io::Result<u64> {
    let id = client.create_upload(p)?;
    let sent = (|| {
        let mut first = head.to_vec();
        first.extend(client.get_range_if(p, (head.len() as u64, HEAD_PART - 1), etag)?);
        let mut parts = vec![(1, client.upload_part(p, &id, 1, &first)?)];
        let mut at = HEAD_PART;
        while at < len {
            let end = (at + COPY_PART).min(len);
            let n = parts.len() as u32 + 1;
            let tag = client.upload_part_copy(p, &id, n, p, (at, end - 1), etag)?;
            parts.push((n, tag));
            at = end;
        }
        client.complete_upload(p, &id, &parts)
    })();
    if let Err(e) = sent {
        let _ = client.abort_upload(p, &id);
        return Err(e);
    }
    client.head(p)?.ok_or_else(|| {
        io::Error::other(format!(
            "{p}: the object is gone after its header was rewritten"
        ))
    })
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // best effort: a store that is gone keeps the parts until clean_uploads or its own
        // lifecycle rule removes them; no object was made either way
        let _ = self.client.abort_upload(&self.path, &self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_bad_buckets_are_refused() {
        let p = S3Path::parse("s3://my-bucket/pcs/a b.lbi").unwrap();
        assert_eq!(
            (p.bucket.as_str(), p.key.as_str()),
            ("my-bucket", "pcs/a b.lbi")
        );
        assert_eq!(S3Path::parse("s3://bkt").unwrap().key, "");
        for bad in [
            "s3://",
            "s3://AB/x",
            "s3://ab/x",
            "s3://-abc/x",
            "http://abc/x",
        ] {
            assert!(S3Path::parse(bad).is_err(), "{bad}");
        }
        assert!(is_s3(Path::new("s3://b/k")) && !is_s3(Path::new("/s3/b")));
    }

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(amz_dates(0).1, "19700101T000000Z");
        assert_eq!(amz_dates(1_440_938_160).1, "20150830T123600Z");
        assert_eq!(amz_dates(951_782_400).0, "20000229");
        assert_eq!(amz_dates(4_107_542_399).1, "21000228T235959Z");
    }

    #[test]
    fn uri_encoding_follows_s3() {
        assert_eq!(uri_encode("a b/c~d+e", true), "a%20b/c~d%2Be");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn the_signature_matches_aws_documented_example() {
        // AWS's SigV4 example for S3, "GET Object" (GET /test.txt, Range: bytes=0-9, on
        // 24 May 2013), from its documentation "Signature Calculations for the Authorization
        // Header: Transferring Payload in a Single Chunk"
        let cfg = Config::new(
            "https://s3.amazonaws.com",
            "us-east-1",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            false,
        )
        .unwrap();
        let client = Client::new(cfg);
        let url = client.url("examplebucket", "test.txt", "");
        let h = client.sign_at(
            1_369_353_600,
            "GET",
            &url,
            EMPTY_SHA256,
            &[("Range".into(), "bytes=0-9".into())],
        );
        let auth = &h.iter().find(|(k, _)| k == "Authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn path_style_for_addresses_and_plain_names() {
        let c = |e: &str| Config::new(e, "us-east-1", "a", "b", None, false).unwrap();
        assert!(c("http://127.0.0.1:8333").path_style);
        assert!(c("http://nas:9000").path_style);
        assert!(!c("https://s3.eu-west-1.amazonaws.com").path_style);
        let cl = Client::new(c("http://127.0.0.1:8333/"));
        assert_eq!(cl.url("bk", "a b/c", "").path, "/bk/a%20b/c");
        let cl = Client::new(c("https://s3.example.com"));
        let u = cl.url("bk", "x", "uploads=");
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("bk.s3.example.com", "/x?uploads=")
        );
    }

    #[test]
    fn xml_values_unescape_and_lists_parse() {
        let t = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a&amp;b</Key>\
                 <Size>12</Size></Contents><Contents><Key>c</Key><Size>3</Size></Contents>\
                 </ListBucketResult>";
        let got: Vec<_> = xml_blocks(t, "Contents")
            .into_iter()
            .map(|c| (xml_value(c, "Key").unwrap(), xml_value(c, "Size").unwrap()))
            .collect();
        assert_eq!(got, [("a&b".into(), "12".into()), ("c".into(), "3".into())]);
        assert_eq!(xml_unescape("&#65;&#x42;&bogus;"), "AB&bogus;");
    }

    #[test]
    fn parts_grow_so_that_ten_thousand_hold_one_and_a_half_terabytes() {
        assert_eq!(part_size(1), 16 << 20);
        assert_eq!(part_size(2000), 16 << 20);
        assert_eq!(part_size(2001), 64 << 20);
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size(n) as u64).sum();
        assert!(total > 3 << 39, "{total}"); // over 1.5 TiB
    }
}
