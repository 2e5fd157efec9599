//! The response a filter sees in the response phases.

use weft_abi::answer::Edit;

use crate::backend::ResponseHost;
use crate::call::{self, PhaseKind, ResponseCall};
use crate::{Error, UpstreamFailure};

/// A response head: the upstream's, or one the proxy made because the upstream
/// exchange failed ([`Response::upstream_failure`] says why). Changes go back with the
/// filter's answer, as for [`Request`](crate::Request).
pub struct Response<'a> {
    pub(crate) call: &'a mut ResponseCall,
    pub(crate) host: ResponseHost<'a>,
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Response<'_> {
    fn edit(&mut self, edit: Edit<'_>) -> Result<(), Error> {
        if self.call.phase == PhaseKind::ResponseBody {
            return Err(Error(
                "the response head has left in the response-body phase".into(),
            ));
        }
        call::write(|w| w.edit(edit));
        Ok(())
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        call::last(|e| match e {
            Edit::SetStatus(s) => Some(*s),
            _ => None,
        })
        .unwrap_or(self.call.view.status)
    }

    /// Replaces the status code (100 to 999).
    pub fn set_status(&mut self, status: u16) -> Result<(), Error> {
        if !(100..=999).contains(&status) {
            return Err(Error(format!("invalid status {status}")));
        }
        self.edit(Edit::SetStatus(status))
    }

    /// The first value of a header, if present, as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        call::first_value(name, false, || match self.call.view.header(name) {
            Some(v) => v,
            None => self.host.header(name),
        })
    }

    /// The first value of a header, if present, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_bytes(name).map(lossy)
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        call::all_values(&name, false, || self.host.header_all(&name))
            .into_iter()
            .map(lossy)
            .collect()
    }

    /// Every header, in order.
    pub fn headers(&self) -> Vec<(String, String)> {
        call::all_headers(false, self.host.headers())
            .into_iter()
            .map(|(n, v)| (n, lossy(v)))
            .collect()
    }

    /// Sets a header, replacing all its values.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        let name = call::header_name(name)?;
        call::header_value(value.as_bytes())?;
        self.edit(Edit::SetResponseHeader(name.as_bytes(), value.as_bytes()))
    }

    /// Adds a value to a header, keeping the ones it has.
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        let name = call::header_name(name)?;
        call::header_value(value.as_bytes())?;
        self.edit(Edit::AppendResponseHeader(
            name.as_bytes(),
            value.as_bytes(),
        ))
    }

    /// Removes a header and all its values.
    pub fn remove_header(&mut self, name: &str) {
        if let Ok(name) = call::header_name(name) {
            let _ = self.edit(Edit::RemoveResponseHeader(name.as_bytes()));
        }
    }

    /// Set when the proxy made this response because the upstream exchange failed.
    pub fn upstream_failure(&self) -> Option<UpstreamFailure> {
        self.call.view.failure
    }

    /// The endpoint (`ip:port`) that answered or failed, if one was chosen.
    pub fn upstream_address(&self) -> Option<String> {
        self.host.upstream_address()
    }
}
