//! Label and field selectors of a list or watch request, compiled once per request.

use berth_api::ResourceInfo;
use berth_api::selectors::{FieldSelector, LabelSelector};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::params::Params;

/// The selectors of one request.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    info: ResourceInfo,
}

impl Filter {
    /// Compiles the request's selectors; bad syntax or an unsupported field label is a 400.
    pub fn new(info: &ResourceInfo, params: &Params) -> ApiResult<Filter> {
        let labels = match &params.label_selector {
            Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?),
            None => None,
        };
        let fields = match &params.field_selector {
            Some(s) => {
                let f = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                f.check_supported(info).map_err(|e| ApiError::bad_request(e.to_string()))?;
                Some(f)
            }
            None => None,
        };
        Ok(Filter { labels, fields, info: info.clone() })
    }

    /// True when the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// True when `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels
            && !l.matches(object::labels(obj))
        {
            return false;
        }
        if let Some(f) = &self.fields
            && !f.matches(&self.info, obj).unwrap_or(false)
        {
            return false;
        }
        true
    }
}
