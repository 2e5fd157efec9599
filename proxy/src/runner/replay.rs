//! `weft filter test`'s second half: the calls a crate's native tests made (recorded
//! by the SDK's harness, see `weft_sdk`'s `record` module) sent again through the real
//! host, with the built component, and every call answered differently reported.
//!
//! Each recorded harness gets a route of its own with the filter on it (its name and
//! configuration as in the test), behind the in-process chain runner, with a manual
//! clock that follows the test's. The upstream echoes the request it received, so a
//! request-phase call is compared by what reached the upstream (method, path, the
//! headers the test's request had or the filter set) or by the local response; a
//! response-phase call gets the test's response from the upstream and is compared by
//! what the client gets.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::{Answer, ChainRunner, RequestSpec};
use crate::error::UpstreamFailure;
use crate::host::filter_clock::FilterClock;
use crate::host::MANAGED_HEADERS;
use crate::upstream::{Canned, CannedScript, ECHO_CLUSTER};

/// The cluster a route sends to when no filter routes elsewhere.
const UPSTREAM: &str = "upstream";

/// Headers the proxy adds on the way upstream or back, besides those it frames
/// messages with (`crate::host::MANAGED_HEADERS`): not compared.
const ADDED: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "via",
    "date",
    ECHO_CLUSTER,
];

/// Whether the proxy, not the filter, decides a header.
fn managed(name: &str) -> bool {
    MANAGED_HEADERS.contains(&name) || ADDED.contains(&name)
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Harness {
        test: String,
        config: String,
        name: String,
        files: bool,
        start_ms: u64,
        #[serde(default)]
        host: u64,
    },
    Rejected {
        message: String,
    },
    RequestHeaders {
        now_ms: u64,
        request: Req,
        action: Act,
        after: Req,
        outbound: Vec<Call>,
        #[serde(default)]
        random: bool,
    },
    ResponseHeaders {
        now_ms: u64,
        request: Req,
        response: Resp,
        action: Act,
        after: Resp,
        outbound: Vec<Call>,
        #[serde(default)]
        random: bool,
    },
    ResponseBody {
        now_ms: u64,
        request: Req,
        response: Resp,
        body: Vec<u8>,
        end_of_stream: bool,
        buffered: bool,
        action: BodyAct,
        outbound: Vec<Call>,
        #[serde(default)]
        random: bool,
    },
}

/// A mocked cluster's answer to one of the filter's calls.
#[derive(Debug, Clone, Deserialize)]
struct Call {
    cluster: String,
    response: Option<Local>,
    failure: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Req {
    method: String,
    path: String,
    authority: String,
    headers: Vec<(String, String)>,
    client_address: String,
    #[serde(default = "first_attempt")]
    attempt: u32,
    /// Properties earlier filters set (the test gave them).
    #[serde(default)]
    properties: std::collections::BTreeMap<String, String>,
    #[serde(default = "replayable")]
    body_replayable: bool,
    peer_identity: Option<String>,
    response_headers: Vec<(String, String)>,
}

fn first_attempt() -> u32 {
    1
}

fn replayable() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Deserialize)]
struct Local {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Act {
    Continue,
    Respond(Local),
    DelayMs(u64),
    RouteTo(String),
    RetryMs(u64),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BodyAct {
    Continue,
    Replace(Vec<u8>),
    Respond(Local),
}

/// One harness's recording.
struct Recording {
    /// The test process and its host: harnesses sharing a host share state.
    host: (String, u64),
    test: String,
    config: String,
    name: String,
    files: bool,
    start_ms: u64,
    rejected: Option<String>,
    calls: Vec<Line>,
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Report {
    /// Harnesses replayed.
    pub harnesses: usize,
    /// Calls compared.
    pub compared: usize,
    /// Calls not compared: (which, why).
    pub skipped: Vec<(String, String)>,
    /// Calls answered differently, each described.
    pub differences: Vec<String>,
}

/// The filter's settings in the host besides `module` and `config` (`timeout`,
/// `memory_limit`, `failure_policy`...), as YAML.
pub type HostSettings = serde_yaml::Mapping;

/// Replays every recording in `dir` against the component at `module`.
pub async fn replay(dir: &Path, module: &Path, settings: &HostSettings) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut recordings = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let pid = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').next())
            .unwrap_or("")
            .to_owned();
        let Some(rec) = parse(&text, pid).with_context(|| format!("reading {}", file.display()))?
        else {
            continue;
        };
        recordings.push(rec);
    }
    let pki = Pki::make(dir)?;
    for rec in &recordings {
        let sharing = recordings.iter().filter(|r| r.host == rec.host).count();
        if sharing > 1 {
            report.skipped.push((
                rec.test.clone(),
                "the harness shares its TestHost (and state) with another".to_owned(),
            ));
            continue;
        }
        replay_one(rec, module, settings, dir, &pki, &mut report).await?;
    }
    Ok(report)
}

fn parse(text: &str, pid: String) -> anyhow::Result<Option<Recording>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let Line::Harness {
        test,
        config,
        name,
        files,
        start_ms,
        host,
    } = serde_json::from_str(first)?
    else {
        anyhow::bail!("the first line is not a harness");
    };
    let mut rec = Recording {
        host: (pid, host),
        test,
        config,
        name,
        files,
        start_ms,
        rejected: None,
        calls: Vec::new(),
    };
    for line in lines {
        match serde_json::from_str(line)? {
            Line::Rejected { message } => rec.rejected = Some(message),
            Line::Harness { .. } => anyhow::bail!("a second harness line"),
            call => rec.calls.push(call),
        }
    }
    Ok(Some(rec))
}

/// The configuration a recording runs in: one listener, one route with the filter,
/// the clusters it routes to.
fn config_for(
    rec: &Recording,
    module: &Path,
    settings: &HostSettings,
    pki: &Pki,
) -> anyhow::Result<String> {
    let mut clusters: BTreeSet<String> = BTreeSet::from([UPSTREAM.to_owned()]);
    for call in &rec.calls {
        if let Line::RequestHeaders {
            action: Act::RouteTo(c),
            ..
        } = call
        {
            clusters.insert(c.clone());
        }
        let (Line::RequestHeaders { outbound, .. }
        | Line::ResponseHeaders { outbound, .. }
        | Line::ResponseBody { outbound, .. }) = call
        else {
            continue;
        };
        for o in outbound {
            if o.error.is_none() {
                clusters.insert(o.cluster.clone());
            }
        }
    }
    let config: serde_yaml::Value = serde_json::from_str(&rec.config)
        .with_context(|| format!("the test's configuration {:?} is not JSON", rec.config))?;
    let mut filter = settings.clone();
    filter.insert("module".into(), module.display().to_string().into());
    filter.insert("config".into(), config);
    let mut filters = serde_yaml::Mapping::new();
    filters.insert(rec.name.clone().into(), filter.into());
    let mut cluster_map = serde_yaml::Mapping::new();
    for c in clusters {
        let endpoints = serde_yaml::Value::Sequence(vec!["127.0.0.1:9".into()]);
        let mut m = serde_yaml::Mapping::new();
        m.insert("endpoints".into(), endpoints);
        cluster_map.insert(c.into(), m.into());
    }
    // A listener that verifies client certificates, so that a filter reading the
    // peer's identity is accepted (the runner serves requests in process: no TLS).
    let doc = serde_json::json!({
        "listeners": [{
            "name": "test",
            "address": "127.0.0.1:0",
            "tls": {
                "certificates": [{ "cert": pki.cert, "key": pki.key }],
                "client_auth": "optional",
                "client_ca": pki.ca,
            },
            "routes": [{ "cluster": UPSTREAM, "filters": [rec.name] }],
        }],
    });
    let mut doc: serde_yaml::Value = serde_json::from_value(doc)?;
    let map = doc.as_mapping_mut().expect("an object");
    map.insert("clusters".into(), cluster_map.into());
    map.insert("filters".into(), filters.into());
    Ok(serde_yaml::to_string(&doc)?)
}

async fn replay_one(
    rec: &Recording,
    module: &Path,
    settings: &HostSettings,
    dir: &Path,
    pki: &Pki,
    report: &mut Report,
) -> anyhow::Result<()> {
    if rec.files {
        report
            .skipped
            .push((rec.test.clone(), "the filter reads files".to_owned()));
        return Ok(());
    }
    report.harnesses += 1;
    let yaml = config_for(rec, module, settings, pki)?;
    let path = dir.join(format!("{}.yaml", sanitize(&rec.test)));
    std::fs::write(&path, &yaml)?;
    let script = Arc::new(CannedScript::default());
    let mut canned = Canned::new(StatusCode::OK, HeaderMap::new(), Bytes::new());
    canned.script = Some(script.clone());
    let client = first_client(rec).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 40000)));
    let loaded = ChainRunner::load_with_clock(
        &path,
        None,
        canned,
        client,
        None,
        FilterClock::manual(rec.start_ms),
    )
    .await;
    let runner = match (loaded, &rec.rejected) {
        (Err(_), Some(_)) => {
            report.compared += 1;
            return Ok(());
        }
        (Err(e), None) => {
            report.differences.push(format!(
                "{}: the host refused the configuration the native test accepted: {e:#}",
                rec.test
            ));
            return Ok(());
        }
        (Ok(_), Some(message)) => {
            report.differences.push(format!(
                "{}: the native test refused the configuration ({message}), the host accepted it",
                rec.test
            ));
            return Ok(());
        }
        (Ok(r), None) => r,
    };
    // Once a call could not be replayed exactly (a retry, a later attempt), the
    // host's state may differ from the test's: later calls are not compared.
    let mut diverged = None;
    for (i, call) in rec.calls.iter().enumerate() {
        let what = format!("{}, call {}", rec.test, i + 1);
        if let Some(at) = diverged {
            report.skipped.push((
                format!("{what} and later"),
                format!("after call {at}, which the host could not replay exactly"),
            ));
            continue;
        }
        match compare(&runner, &script, call).await? {
            Outcome::Same => report.compared += 1,
            Outcome::Skipped(why) => report.skipped.push((what.clone(), why)),
            Outcome::Diverged(why) => {
                report.skipped.push((what.clone(), why));
                diverged = Some(i + 1);
            }
            Outcome::Differs(how) => report.differences.push(format!("{what}: {how}")),
        }
    }
    Ok(())
}

fn sanitize(test: &str) -> String {
    test.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn first_client(rec: &Recording) -> Option<SocketAddr> {
    rec.calls.iter().find_map(|c| match c {
        Line::RequestHeaders { request, .. }
        | Line::ResponseHeaders { request, .. }
        | Line::ResponseBody { request, .. } => request.client_address.parse().ok(),
        _ => None,
    })
}

enum Outcome {
    Same,
    /// Not compared; the host's state still follows the test's.
    Skipped(String),
    /// Not compared, and the host's state may no longer follow the test's.
    Diverged(String),
    Differs(String),
}

/// A CA and a server certificate for the replay's listener.
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

impl Pki {
    fn make(dir: &Path) -> anyhow::Result<Pki> {
        use crate::tls::{issue_ca, issue_svid, SvidRequest};
        let ca = issue_ca("weft-filter-test.local", 1)?;
        let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        let server = issue_svid(
            &ca.cert_pem,
            &ca.key_pem,
            &SvidRequest {
                spiffe_id: None,
                dns_names: &["localhost".to_owned()],
                not_before: now,
                not_after: now + time::Duration::days(1),
            },
        )?;
        let write = |name: &str, text: &str| -> anyhow::Result<String> {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            Ok(p.display().to_string())
        };
        Ok(Pki {
            ca: write("ca.pem", &ca.cert_pem)?,
            cert: write("server.pem", &server.cert_pem)?,
            key: write("server.key", &server.key_pem)?,
        })
    }
}

fn spec(req: &Req) -> anyhow::Result<RequestSpec> {
    let mut headers = HeaderMap::new();
    for (n, v) in &req.headers {
        if n.eq_ignore_ascii_case("host") {
            continue;
        }
        headers.append(
            HeaderName::from_bytes(n.as_bytes())?,
            HeaderValue::from_str(v)?,
        );
    }
    Ok(RequestSpec {
        method: Method::from_bytes(req.method.as_bytes())?,
        path: req.path.clone(),
        authority: req.authority.clone(),
        headers,
        body: Bytes::new(),
    })
}

fn header_map(list: &[(String, String)]) -> anyhow::Result<HeaderMap> {
    let mut m = HeaderMap::new();
    for (n, v) in list {
        m.append(
            HeaderName::from_bytes(n.as_bytes())?,
            HeaderValue::from_str(v)?,
        );
    }
    Ok(m)
}

async fn serve(runner: &ChainRunner, req: &Req) -> anyhow::Result<Answer> {
    let client = req
        .client_address
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 40000)));
    runner
        .serve_as(&spec(req)?, client, req.peer_identity.clone())
        .await
}

/// Serves a recorded call's request in the host: the clock moved to the test's, the
/// upstream's answer (`upstream`, else the echo) and the mocks' answers scripted.
/// `Err` holds the outcome of a call that ran but is not compared.
async fn run_call(
    runner: &ChainRunner,
    script: &CannedScript,
    now_ms: u64,
    request: &Req,
    upstream: Option<(&Resp, Bytes)>,
    outbound: &[Call],
    random: bool,
) -> anyhow::Result<Result<Answer, Outcome>> {
    runner.set_clock_ms(now_ms);
    if let Some((response, body)) = upstream {
        *script.next.lock() = Some((
            StatusCode::from_u16(response.status)?,
            header_map(&response.headers)?,
            body,
        ));
    }
    let unscriptable = script_calls(script, outbound)?;
    let answer = serve(runner, request).await?;
    if let Some(why) = unscriptable {
        return Ok(Err(Outcome::Diverged(why)));
    }
    if random {
        script.calls.lock().clear();
        return Ok(Err(chance()));
    }
    Ok(Ok(answer))
}

async fn compare(
    runner: &ChainRunner,
    script: &CannedScript,
    call: &Line,
) -> anyhow::Result<Outcome> {
    match call {
        Line::RequestHeaders {
            now_ms,
            request,
            action,
            after,
            outbound,
            random,
        } => {
            if let Some(o) = unreproducible(request) {
                return Ok(o);
            }
            if let Act::DelayMs(ms) = action {
                if *ms > 1000 {
                    return Ok(Outcome::Diverged(format!(
                        "a delay of {ms} ms is not waited out"
                    )));
                }
            }
            let answer =
                match run_call(runner, script, *now_ms, request, None, outbound, *random).await? {
                    Ok(a) => a,
                    Err(o) => return Ok(o),
                };
            Ok(with_calls(
                script,
                request_outcome(request, action, after, &answer),
            ))
        }
        Line::ResponseHeaders {
            now_ms,
            request,
            response,
            action,
            after,
            outbound,
            random,
        } => {
            if let Some(o) = unreproducible(request) {
                return Ok(o);
            }
            if let Act::RetryMs(_) = action {
                return Ok(Outcome::Diverged("a retry is not replayed".to_owned()));
            }
            let upstream = Some((response, Bytes::new()));
            let answer = match run_call(
                runner, script, *now_ms, request, upstream, outbound, *random,
            )
            .await?
            {
                Ok(a) => a,
                Err(o) => return Ok(o),
            };
            Ok(with_calls(
                script,
                match action {
                    Act::Respond(local) => local_outcome(local, &answer),
                    _ => {
                        let mut how = Vec::new();
                        if answer.status.as_u16() != after.status {
                            how.push(format!(
                                "status: native {}, host {}",
                                after.status, answer.status
                            ));
                        }
                        headers_differ(
                            &response.headers,
                            &after.headers,
                            &answer.headers,
                            &mut how,
                        );
                        verdict(how)
                    }
                },
            ))
        }
        Line::ResponseBody {
            now_ms,
            request,
            response,
            body,
            end_of_stream,
            buffered,
            action,
            outbound,
            random,
        } => {
            if !end_of_stream || !buffered {
                return Ok(Outcome::Skipped(
                    "a streamed body chunk is not compared".to_owned(),
                ));
            }
            if let Some(o) = unreproducible(request) {
                return Ok(o);
            }
            let upstream = Some((response, Bytes::from(body.clone())));
            let answer = match run_call(
                runner, script, *now_ms, request, upstream, outbound, *random,
            )
            .await?
            {
                Ok(a) => a,
                Err(o) => return Ok(o),
            };
            Ok(with_calls(
                script,
                match action {
                    BodyAct::Respond(local) => local_outcome(local, &answer),
                    BodyAct::Continue | BodyAct::Replace(_) => {
                        let want: &[u8] = match action {
                            BodyAct::Replace(b) => b,
                            _ => body,
                        };
                        if answer.body.as_ref() == want {
                            Outcome::Same
                        } else {
                            Outcome::Differs(format!(
                                "body: native {:?}, host {:?}",
                                String::from_utf8_lossy(want),
                                String::from_utf8_lossy(&answer.body)
                            ))
                        }
                    }
                },
            ))
        }
        _ => Ok(Outcome::Skipped("not a call".to_owned())),
    }
}

const FAILURES: [UpstreamFailure; 8] = [
    UpstreamFailure::ConnectFailure,
    UpstreamFailure::ConnectTimeout,
    UpstreamFailure::Reset,
    UpstreamFailure::Timeout,
    UpstreamFailure::ProtocolError,
    UpstreamFailure::NoEndpoints,
    UpstreamFailure::UnknownCluster,
    UpstreamFailure::Overflow,
];

/// Queues the answers the test's mocks gave, for the filter's calls in the host; why
/// not, when one cannot be given again.
fn script_calls(script: &CannedScript, calls: &[Call]) -> anyhow::Result<Option<String>> {
    let mut queue = script.calls.lock();
    queue.clear();
    for c in calls {
        if let Some(e) = &c.error {
            queue.clear();
            return Ok(Some(format!(
                "the mock of cluster {} answered {e:?}",
                c.cluster
            )));
        }
        if let Some(r) = &c.response {
            queue.push_back(Ok((
                StatusCode::from_u16(r.status)?,
                header_map(&r.headers)?,
                Bytes::from(r.body.clone()),
            )));
        } else if let Some(f) = &c.failure {
            let failure = FAILURES
                .into_iter()
                .find(|x| x.as_str() == f)
                .unwrap_or(UpstreamFailure::Reset);
            queue.push_back(Err(failure));
        }
    }
    Ok(None)
}

/// Whether the host's filter made every call the native one did.
fn calls_left(script: &CannedScript, how: &mut Vec<String>) {
    let left = script.calls.lock().len();
    if left > 0 {
        how.push(format!(
            "the host's filter made {left} call(s) fewer than the native one"
        ));
        script.calls.lock().clear();
    }
}

/// Why the host cannot make `request` as the test did, if it cannot.
fn unreproducible(request: &Req) -> Option<Outcome> {
    let why = if request.attempt > 1 {
        format!(
            "attempt {} is not replayed (the host starts every request at attempt 1)",
            request.attempt
        )
    } else if !request.properties.is_empty() {
        "request properties that earlier filters set are not replayed".to_owned()
    } else if !request.body_replayable {
        "a request body the proxy cannot replay is not reproduced".to_owned()
    } else {
        return None;
    };
    Some(Outcome::Diverged(why))
}

fn chance() -> Outcome {
    Outcome::Skipped(
        "the filter drew random numbers: the host's draws are not the test's".to_owned(),
    )
}

/// `outcome`, unless the host's filter made fewer calls than the native one.
fn with_calls(script: &CannedScript, outcome: Outcome) -> Outcome {
    let mut how = Vec::new();
    calls_left(script, &mut how);
    match outcome {
        Outcome::Differs(d) => {
            how.insert(0, d);
            Outcome::Differs(how.join("; "))
        }
        other if how.is_empty() => other,
        _ => Outcome::Differs(how.join("; ")),
    }
}

fn verdict(how: Vec<String>) -> Outcome {
    if how.is_empty() {
        Outcome::Same
    } else {
        Outcome::Differs(how.join("; "))
    }
}

fn describe(answer: &Answer) -> String {
    match answer.headers.get(ECHO_CLUSTER) {
        Some(c) => format!(
            "{} from cluster {}",
            answer.status,
            String::from_utf8_lossy(c.as_bytes())
        ),
        None => format!(
            "{} answered by the proxy ({:?})",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ),
    }
}

fn local_outcome(local: &Local, answer: &Answer) -> Outcome {
    let mut how = Vec::new();
    if answer.status.as_u16() != local.status {
        how.push(format!(
            "native: respond {}, host: {}",
            local.status,
            describe(answer)
        ));
        return verdict(how);
    }
    if answer.body.as_ref() != local.body.as_slice() {
        how.push(format!(
            "body: native {:?}, host {:?}",
            String::from_utf8_lossy(&local.body),
            String::from_utf8_lossy(&answer.body)
        ));
    }
    let names: BTreeSet<String> = local
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    for name in names {
        if managed(&name) {
            continue;
        }
        let want = values(&local.headers, &name);
        let got = answer_values(&answer.headers, &name);
        if want != got {
            how.push(format!("header {name}: native {want:?}, host {got:?}"));
        }
    }
    verdict(how)
}

fn values(list: &[(String, String)], name: &str) -> Vec<String> {
    list.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

fn answer_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Compares each header (other than those the proxy manages) between the native result
/// and what the host produced.
fn headers_differ(
    before: &[(String, String)],
    after: &[(String, String)],
    got: &HeaderMap,
    how: &mut Vec<String>,
) {
    // What the test's exchange had before or after the filter, and what the host's
    // has: a header only one of them has differs too.
    let names: BTreeSet<String> = before
        .iter()
        .chain(after)
        .map(|(n, _)| n.to_ascii_lowercase())
        .chain(got.keys().map(|n| n.as_str().to_owned()))
        .collect();
    for name in names {
        if managed(&name) {
            continue;
        }
        let want = values(after, &name);
        let got = answer_values(got, &name);
        if want != got {
            how.push(format!("header {name}: native {want:?}, host {got:?}"));
        }
    }
}

#[derive(Deserialize)]
struct Echo {
    method: String,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
}

fn request_outcome(before: &Req, action: &Act, after: &Req, answer: &Answer) -> Outcome {
    let want_cluster = match action {
        Act::Respond(local) => return local_outcome(local, answer),
        Act::RetryMs(ms) => {
            return Outcome::Skipped(format!("a retry after {ms} ms is not compared"))
        }
        Act::RouteTo(c) => c.as_str(),
        Act::Continue | Act::DelayMs(_) => UPSTREAM,
    };
    let Some(cluster) = answer.headers.get(ECHO_CLUSTER) else {
        let native = match action {
            Act::RouteTo(c) => format!("route to {c}"),
            _ => "continue".to_owned(),
        };
        return Outcome::Differs(format!("native: {native}, host: {}", describe(answer)));
    };
    let mut how = Vec::new();
    if cluster.as_bytes() != want_cluster.as_bytes() {
        how.push(format!(
            "cluster: native {want_cluster}, host {}",
            String::from_utf8_lossy(cluster.as_bytes())
        ));
    }
    let echo: Echo = match serde_json::from_slice(&answer.body) {
        Ok(e) => e,
        Err(e) => return Outcome::Differs(format!("the upstream's echo is unreadable: {e}")),
    };
    if echo.method != after.method {
        how.push(format!(
            "method: native {}, host {}",
            after.method, echo.method
        ));
    }
    if echo.path != after.path {
        how.push(format!("path: native {}, host {}", after.path, echo.path));
    }
    if before.authority != after.authority && echo.authority != after.authority {
        how.push(format!(
            "authority: native {}, host {}",
            after.authority, echo.authority
        ));
    }
    let mut upstream = HeaderMap::new();
    for (n, v) in &echo.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            upstream.append(n, v);
        }
    }
    headers_differ(&before.headers, &after.headers, &upstream, &mut how);
    // Headers the filter added to the client's response. (Only these: the host runs
    // the filter's response phases too, which this call of the test did not.)
    for (name, _) in &after.response_headers {
        let want = values(&after.response_headers, name);
        let got = answer_values(&answer.headers, name);
        if want != got {
            how.push(format!(
                "response header {name}: native {want:?}, host {got:?}"
            ));
        }
    }
    verdict(how)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_makes_a_route_with_its_filter_and_clusters() {
        let text = r#"{"kind":"harness","test":"t::x","config":"{\"limit\":2}","name":"test","files":false,"start_ms":5}
{"kind":"request_headers","now_ms":5,"request":{"method":"GET","path":"/","authority":"a","headers":[],"client_address":"127.0.0.1:1","peer_identity":null,"response_headers":[]},"action":{"route_to":"canary"},"after":{"method":"GET","path":"/","authority":"a","headers":[],"client_address":"127.0.0.1:1","peer_identity":null,"response_headers":[]},"outbound":[]}
"#;
        let rec = parse(text, "1".to_owned()).unwrap().unwrap();
        assert_eq!(rec.calls.len(), 1);
        let mut settings = HostSettings::new();
        settings.insert("timeout".into(), "50ms".into());
        let pki = Pki {
            ca: "/ca.pem".into(),
            cert: "/c.pem".into(),
            key: "/c.key".into(),
        };
        let yaml = config_for(&rec, Path::new("/m.wasm"), &settings, &pki).unwrap();
        assert!(yaml.contains("canary:"), "{yaml}");
        assert!(yaml.contains("limit: 2"), "{yaml}");
        assert!(yaml.contains("timeout: 50ms"), "{yaml}");
        assert!(yaml.contains("module: /m.wasm"), "{yaml}");
        assert!(yaml.contains("client_ca: /ca.pem"), "{yaml}");
    }
}
