//! `#[event(...)]` and `#[aggregate(...)]` parsed into typed attributes.
//!
//! Parsing never stops at the first problem: every unknown key, duplicate
//! and malformed value becomes a spanned error in the [`Ctxt`], and parsing
//! goes on with the rest.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::{Attribute, LitInt, LitStr, Path, Token};

use crate::ctxt::Ctxt;
use crate::symbol::{
    AGGREGATE, CONFLICTS, CRATE, EVENT, EVENTS, EVERY, NAME, SNAPSHOT, Symbol, UPCAST_FROM, VERSION,
};

/// A value given at most once, remembering where.
pub(crate) struct Attr<T> {
    owner: &'static str,
    key: Symbol,
    value: Option<(Span, T)>,
}

impl<T> Attr<T> {
    fn new(attr: &'static str, key: Symbol) -> Self {
        Attr {
            owner: attr,
            key,
            value: None,
        }
    }

    fn set(&mut self, cx: &Ctxt, span: Span, value: T) {
        if self.value.is_some() {
            let close = if self.owner.contains('(') { ")" } else { "" };
            let message = format!("duplicate `#[{}({}){close}]`", self.owner, self.key);
            cx.syn_error(syn::Error::new(span, message));
        } else {
            self.value = Some((span, value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }

    pub(crate) fn spanned(&self) -> Option<(Span, &T)> {
        self.value.as_ref().map(|(s, v)| (*s, v))
    }
}

/// `#[event(name = "...", version = N, upcast_from = Path, crate = "...")]`.
pub(crate) struct EventAttrs {
    pub(crate) name: Attr<String>,
    pub(crate) version: Attr<u32>,
    pub(crate) upcast_from: Attr<Path>,
    pub(crate) krate: Attr<Path>,
}

/// `#[aggregate(name = "...", events(...), snapshot(every = N, version = V),
/// conflicts = path, crate = "...")]`.
pub(crate) struct AggregateAttrs {
    pub(crate) name: Attr<String>,
    pub(crate) events: Attr<Vec<Path>>,
    pub(crate) snapshot: Attr<SnapshotAttrs>,
    pub(crate) conflicts: Attr<Path>,
    pub(crate) krate: Attr<Path>,
    /// The first `#[aggregate]` attribute, for errors about missing keys.
    pub(crate) first_attr: Option<Span>,
    /// Whether an `events` key was written at all (even a malformed one).
    pub(crate) events_written: bool,
}

pub(crate) struct SnapshotAttrs {
    pub(crate) every: Attr<u64>,
    pub(crate) version: Attr<u32>,
}

impl EventAttrs {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = EventAttrs {
            name: Attr::new("event", NAME),
            version: Attr::new("event", VERSION),
            upcast_from: Attr::new("event", UPCAST_FROM),
            krate: Attr::new("event", CRATE),
        };
        for attr in attrs.iter().filter(|a| a.path() == EVENT) {
            let parsed = attr.parse_nested_meta(|meta| {
                let span = meta
                    .path
                    .get_ident()
                    .map_or_else(|| meta_span(&meta), syn::Ident::span);
                if meta.path == NAME {
                    if let Some(name) = lit_str(&meta)? {
                        out.name.set(cx, name.span(), name.value());
                    }
                } else if meta.path == VERSION {
                    if let Some(version) = lit_int::<u32>(cx, &meta)? {
                        out.version.set(cx, span, version);
                    }
                } else if meta.path == UPCAST_FROM {
                    let path: Path = meta.value()?.parse()?;
                    out.upcast_from.set(cx, span, path);
                } else if meta.path == CRATE {
                    if let Some(path) = crate_path(cx, &meta)? {
                        out.krate.set(cx, span, path);
                    }
                } else {
                    unknown(cx, &meta, "event", &[NAME, VERSION, UPCAST_FROM, CRATE])?;
                }
                Ok(())
            });
            if let Err(e) = parsed {
                cx.syn_error(e);
            }
        }
        out
    }
}

impl AggregateAttrs {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = AggregateAttrs {
            name: Attr::new("aggregate", NAME),
            events: Attr::new("aggregate", EVENTS),
            snapshot: Attr::new("aggregate", SNAPSHOT),
            conflicts: Attr::new("aggregate", CONFLICTS),
            krate: Attr::new("aggregate", CRATE),
            first_attr: None,
            events_written: false,
        };
        for attr in attrs.iter().filter(|a| a.path() == AGGREGATE) {
            out.first_attr.get_or_insert_with(|| attr.pound_token.span);
            let parsed = attr.parse_nested_meta(|meta| {
                let span = meta_span(&meta);
                if meta.path == NAME {
                    if let Some(name) = lit_str(&meta)? {
                        out.name.set(cx, name.span(), name.value());
                    }
                } else if meta.path == EVENTS {
                    out.events_written = true;
                    let events = event_list(&meta)?;
                    out.events.set(cx, span, events);
                } else if meta.path == SNAPSHOT {
                    let snapshot = snapshot_attrs(cx, &meta)?;
                    out.snapshot.set(cx, span, snapshot);
                } else if meta.path == CONFLICTS {
                    let path: Path = meta.value()?.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "expected a function path: `conflicts = Self::conflicts_with`",
                        )
                    })?;
                    out.conflicts.set(cx, span, path);
                } else if meta.path == CRATE {
                    if let Some(path) = crate_path(cx, &meta)? {
                        out.krate.set(cx, span, path);
                    }
                } else {
                    unknown(
                        cx,
                        &meta,
                        "aggregate",
                        &[NAME, EVENTS, SNAPSHOT, CONFLICTS, CRATE],
                    )?;
                }
                Ok(())
            });
            if let Err(e) = parsed {
                cx.syn_error(e);
            }
        }
        out
    }
}

fn meta_span(meta: &ParseNestedMeta<'_>) -> Span {
    meta.path
        .segments
        .first()
        .map_or_else(Span::call_site, |s| s.ident.span())
}

/// `events(A, b::B, ...)`: paths only.
fn event_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Path>> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(
            meta.error("expected a list of event types: `events(TicketOpened, TicketClosed)`")
        );
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected event types, like `events(TicketOpened, TicketClosed)`",
        )
    })?;
    Ok(paths.into_iter().collect())
}

/// `snapshot(every = N, version = V)`.
fn snapshot_attrs(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<SnapshotAttrs> {
    let mut out = SnapshotAttrs {
        every: Attr::new("aggregate(snapshot", EVERY),
        version: Attr::new("aggregate(snapshot", VERSION),
    };
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error("expected `snapshot(every = N)`, e.g. `snapshot(every = 100)`"));
    }
    meta.parse_nested_meta(|inner| {
        let span = meta_span(&inner);
        if inner.path == EVERY {
            if let Some(every) = lit_int::<u64>(cx, &inner)? {
                out.every.set(cx, span, every);
            }
        } else if inner.path == VERSION {
            if let Some(version) = lit_int::<u32>(cx, &inner)? {
                out.version.set(cx, span, version);
            }
        } else {
            unknown(cx, &inner, "aggregate(snapshot", &[EVERY, VERSION])?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn lit_str(meta: &ParseNestedMeta<'_>) -> syn::Result<Option<LitStr>> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        Ok(Some(value.parse()?))
    } else {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        Err(value.error(format!("expected a string: `{key} = \"...\"`")))
    }
}

fn lit_int<N>(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<N>>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    let value = meta.value()?;
    let key = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default();
    if !value.peek(LitInt) {
        return Err(value.error(format!("expected a whole number: `{key} = 1`")));
    }
    let lit: LitInt = value.parse()?;
    if let Ok(n) = lit.base10_parse::<N>() {
        Ok(Some(n))
    } else {
        cx.error_spanned_by(
            &lit,
            format!(
                "`{key}` must be a whole number that fits in {}",
                std::any::type_name::<N>()
            ),
        );
        Ok(None)
    }
}

fn crate_path(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Path>> {
    let Some(lit) = lit_str(meta)? else {
        return Ok(None);
    };
    if let Ok(path) = lit.parse::<Path>() {
        Ok(Some(path))
    } else {
        cx.error_spanned_by(
            &lit,
            format!(
                "`crate` must be a path, like `crate = \"my_es\"`; `{}` is not",
                lit.value()
            ),
        );
        Ok(None)
    }
}

/// Reports an unknown key and skips its value, so the keys after it are
/// still checked.
fn unknown(cx: &Ctxt, meta: &ParseNestedMeta<'_>, attr: &str, known: &[Symbol]) -> syn::Result<()> {
    let path = meta
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::");
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let close = if attr.contains('(') { ")" } else { "" };
    cx.error_spanned_by(
        &meta.path,
        format!("unknown key `{path}` in `#[{attr}(...){close}]`; expected one of {list}"),
    );
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}
