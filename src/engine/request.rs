//! Rendering a request from its templates: the one path for a journey's steps and for
//! verification's read-backs, so both send what the scenario says in the same way.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use http::{HeaderValue, Method, Request};

use crate::plan::template::{Template, Values};

/// What could not be rendered into a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unrenderable {
    /// The rendered path is not a valid request target.
    Url,
    /// A header's rendered value is not a valid header value.
    Header(HeaderName),
}

/// The request target: the base URL's path prefix, then the rendered path.
pub(crate) fn render_target(prefix: &[u8], path: &Template, values: &dyn Values) -> Vec<u8> {
    let mut target = Vec::with_capacity(prefix.len() + path.source.len() + 16);
    target.extend_from_slice(prefix);
    path.render_into(values, &mut target);
    target
}

/// The parts of one request, before its values are rendered in.
pub(crate) struct RequestTemplate<'a> {
    pub method: &'a Method,
    /// The base URL's path prefix.
    pub prefix: &'a [u8],
    pub path: &'a Template,
    /// The target's headers, sent with every request; the request's own come after them
    /// and win.
    pub target_headers: &'a HeaderMap,
    pub headers: &'a [(HeaderName, Template)],
}

impl RequestTemplate<'_> {
    /// The request with `values` rendered in and `body` as its body.
    pub(crate) fn render(
        &self,
        values: &dyn Values,
        body: Bytes,
    ) -> Result<Request<Bytes>, Unrenderable> {
        let target = render_target(self.prefix, self.path, values);
        let uri =
            http::Uri::from_maybe_shared(Bytes::from(target)).map_err(|_| Unrenderable::Url)?;
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        if !self.target_headers.is_empty() {
            *request.headers_mut() = self.target_headers.clone();
        }
        for (name, template) in self.headers {
            let value = HeaderValue::from_maybe_shared(Bytes::from(template.render(values)))
                .map_err(|_| Unrenderable::Header(name.clone()))?;
            request.headers_mut().insert(name.clone(), value);
        }
        Ok(request)
    }
}
