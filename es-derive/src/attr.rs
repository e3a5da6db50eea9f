//! `#[event(...)]`, `#[aggregate(...)]` and `#[projection(...)]` parsed into
//! typed attributes.
//!
//! Parsing never stops at the first problem: every unknown key, duplicate
//! and malformed value becomes a spanned error in the [`Ctxt`], and parsing
//! goes on with the next attribute. Only the syntax is checked here; what the
//! values mean (a version of 0, a missing `events`, ...) is `validate`'s job.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::{Attribute, LitInt, LitStr, Path, Token};

use crate::ctxt::Ctxt;
use crate::symbol::{
    AGGREGATE, AGGREGATES, CONFLICTS, CONTEXT, CRATE, EVENT, EVENTS, EVERY, NAME, PROJECTION,
    SNAPSHOT, Symbol, UPCAST_FROM, VERSION,
};

/// A value given at most once, remembering the span of its key.
pub(crate) struct Attr<T> {
    owner: &'static str,
    key: Symbol,
    value: Option<(Span, T)>,
}

impl<T> Attr<T> {
    fn new(owner: &'static str, key: Symbol) -> Self {
        Attr {
            owner,
            key,
            value: None,
        }
    }

    /// Records the value of the key at `span`; a second one is an error
    /// there.
    fn set(&mut self, cx: &Ctxt, span: Span, value: T) {
        if self.value.is_some() {
            let close = if self.owner.contains('(') { ")" } else { "" };
            let message = format!(
                "duplicate `#[{}({}){close}]`: give `{}` once",
                self.owner, self.key, self.key
            );
            cx.syn_error(syn::Error::new(span, message));
        } else {
            self.value = Some((span, value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }

    /// The value and the span of its key.
    pub(crate) fn spanned(&self) -> Option<(Span, &T)> {
        self.value.as_ref().map(|(s, v)| (*s, v))
    }
}

/// A number as written: its value and the span of its literal.
#[derive(Clone, Copy)]
pub(crate) struct Number<N> {
    pub(crate) value: N,
    pub(crate) span: Span,
}

/// `#[event(name = "...", version = N, upcast_from = Path, crate = "...")]`.
pub(crate) struct EventAttrs {
    pub(crate) name: Attr<LitStr>,
    pub(crate) version: Attr<Number<u32>>,
    pub(crate) upcast_from: Attr<Path>,
    pub(crate) krate: Attr<Path>,
}

/// `#[aggregate(name = "...", events(...), snapshot(every = N, version = V),
/// conflicts = path, crate = "...")]`.
pub(crate) struct AggregateAttrs<'a> {
    pub(crate) name: Attr<LitStr>,
    pub(crate) events: EventsAttr<'a>,
    pub(crate) snapshot: Attr<SnapshotAttrs>,
    pub(crate) conflicts: Attr<Path>,
    pub(crate) krate: Attr<Path>,
}

/// `#[projection(name = "...", version = N, events(...), aggregates(...),
/// context = Path, crate = "...")]`.
pub(crate) struct ProjectionAttrs<'a> {
    pub(crate) name: Attr<LitStr>,
    pub(crate) version: Attr<Number<u32>>,
    pub(crate) events: EventsAttr<'a>,
    pub(crate) aggregates: Attr<Vec<Path>>,
    pub(crate) context: Attr<Path>,
    pub(crate) krate: Attr<Path>,
}

/// `events(A, B, ...)`, the key `#[aggregate]` and `#[projection]` share.
pub(crate) struct EventsAttr<'a> {
    pub(crate) list: Attr<Vec<Path>>,
    /// The first `#[aggregate]` (`#[projection]`) attribute, for the error
    /// about a missing `events`.
    pub(crate) first_attr: Option<&'a Attribute>,
    /// Whether an `events` key was written at all (even a malformed one,
    /// which is reported here and must not be reported again as missing).
    pub(crate) written: bool,
}

impl EventsAttr<'_> {
    fn new(owner: &'static str) -> Self {
        EventsAttr {
            list: Attr::new(owner, EVENTS),
            first_attr: None,
            written: false,
        }
    }

    /// The value of the `events` key at `span`.
    fn parse(&mut self, cx: &Ctxt, span: Span, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        self.written = true;
        let events = event_list(meta)?;
        self.list.set(cx, span, events);
        Ok(())
    }
}

/// `snapshot(every = N, version = V)`.
pub(crate) struct SnapshotAttrs {
    pub(crate) every: Attr<Number<u64>>,
    pub(crate) version: Attr<Number<u32>>,
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
                let span = key_span(&meta);
                if meta.path == NAME {
                    let name = lit_str(&meta)?;
                    out.name.set(cx, span, name);
                } else if meta.path == VERSION {
                    if let Some(version) = lit_int::<u32>(cx, &meta)? {
                        out.version.set(cx, span, version);
                    }
                } else if meta.path == UPCAST_FROM {
                    let path = path_value(&meta, "TicketEscalatedV1")?;
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

impl<'a> AggregateAttrs<'a> {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &'a [Attribute]) -> Self {
        let mut out = AggregateAttrs {
            name: Attr::new("aggregate", NAME),
            events: EventsAttr::new("aggregate"),
            snapshot: Attr::new("aggregate", SNAPSHOT),
            conflicts: Attr::new("aggregate", CONFLICTS),
            krate: Attr::new("aggregate", CRATE),
        };
        for attr in attrs.iter().filter(|a| a.path() == AGGREGATE) {
            out.events.first_attr.get_or_insert(attr);
            let parsed = attr.parse_nested_meta(|meta| {
                let span = key_span(&meta);
                if meta.path == NAME {
                    let name = lit_str(&meta)?;
                    out.name.set(cx, span, name);
                } else if meta.path == EVENTS {
                    out.events.parse(cx, span, &meta)?;
                } else if meta.path == SNAPSHOT {
                    let snapshot = snapshot_attrs(cx, &meta)?;
                    out.snapshot.set(cx, span, snapshot);
                } else if meta.path == CONFLICTS {
                    let path = path_value(&meta, "Self::conflicts_with")?;
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

impl<'a> ProjectionAttrs<'a> {
    pub(crate) fn from_attrs(cx: &Ctxt, attrs: &'a [Attribute]) -> Self {
        let mut out = ProjectionAttrs {
            name: Attr::new("projection", NAME),
            version: Attr::new("projection", VERSION),
            events: EventsAttr::new("projection"),
            aggregates: Attr::new("projection", AGGREGATES),
            context: Attr::new("projection", CONTEXT),
            krate: Attr::new("projection", CRATE),
        };
        for attr in attrs.iter().filter(|a| a.path() == PROJECTION) {
            out.events.first_attr.get_or_insert(attr);
            let parsed = attr.parse_nested_meta(|meta| {
                let span = key_span(&meta);
                if meta.path == NAME {
                    let name = lit_str(&meta)?;
                    out.name.set(cx, span, name);
                } else if meta.path == VERSION {
                    if let Some(version) = lit_int::<u32>(cx, &meta)? {
                        out.version.set(cx, span, version);
                    }
                } else if meta.path == EVENTS {
                    out.events.parse(cx, span, &meta)?;
                } else if meta.path == AGGREGATES {
                    let aggregates = aggregate_list(&meta)?;
                    out.aggregates.set(cx, span, aggregates);
                } else if meta.path == CONTEXT {
                    let path = path_value(&meta, "rusqlite::Connection")?;
                    out.context.set(cx, span, path);
                } else if meta.path == CRATE {
                    if let Some(path) = crate_path(cx, &meta)? {
                        out.krate.set(cx, span, path);
                    }
                } else {
                    unknown(
                        cx,
                        &meta,
                        "projection",
                        &[NAME, VERSION, EVENTS, AGGREGATES, CONTEXT, CRATE],
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

/// The span of the key being parsed (`name` in `name = "..."`).
fn key_span(meta: &ParseNestedMeta<'_>) -> Span {
    meta.path
        .segments
        .first()
        .map_or_else(Span::call_site, |s| s.ident.span())
}

/// The key as written, for messages.
fn key_name(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// `events(A, b::B, ...)`: paths only.
fn event_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Path>> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(
            "`events` takes a list of event types in parentheses: write `events(TicketOpened, TicketClosed)`",
        ));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected an event type: write `events(TicketOpened, TicketClosed)`",
        )
    })?;
    Ok(paths.into_iter().collect())
}

/// `aggregates(A, b::B, ...)`: paths only.
fn aggregate_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Path>> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(
            "`aggregates` takes a list of aggregate types in parentheses: write `aggregates(Lead, crm::Ticket)`",
        ));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected an aggregate type: write `aggregates(Lead, crm::Ticket)`",
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
        return Err(meta
            .error("`snapshot` takes its settings in parentheses: write `snapshot(every = 100)`"));
    }
    meta.parse_nested_meta(|inner| {
        let span = key_span(&inner);
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

/// `key = "..."`.
fn lit_str(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let value = meta.value()?;
    if value.peek(LitStr) {
        value.parse()
    } else {
        let key = key_name(meta);
        Err(value.error(format!(
            "`{key}` takes a string in quotes: write `{key} = \"...\"`"
        )))
    }
}

/// An unsigned integer type an attribute holds.
trait Unsigned: Sized + TryFrom<u128> {
    const TYPE: &'static str;
    const MAX: u128;
}

impl Unsigned for u32 {
    const TYPE: &'static str = "u32";
    const MAX: u128 = u32::MAX as u128;
}

impl Unsigned for u64 {
    const TYPE: &'static str = "u64";
    const MAX: u128 = u64::MAX as u128;
}

/// `key = N`. A number too large for its type is reported here and yields
/// `None`, so parsing goes on with the next key.
fn lit_int<N: Unsigned>(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Number<N>>> {
    let value = meta.value()?;
    let key = key_name(meta);
    if value.peek(LitStr) {
        // `version = "2"`: say to drop the quotes when the text is a number.
        let lit: LitStr = value.parse()?;
        let text = lit.value();
        let message = if text.trim().parse::<u128>().is_ok() {
            format!(
                "`{key}` takes a number, not a string: write `{key} = {}`",
                text.trim()
            )
        } else {
            format!("`{key}` takes a whole number: write `{key} = 1`")
        };
        return Err(syn::Error::new(lit.span(), message));
    }
    if !value.peek(LitInt) {
        return Err(value.error(format!("`{key}` takes a whole number: write `{key} = 1`")));
    }
    let lit: LitInt = value.parse()?;
    if let Some(Ok(value)) = lit.base10_parse::<u128>().ok().map(N::try_from) {
        Ok(Some(Number {
            value,
            span: lit.span(),
        }))
    } else {
        cx.error_spanned_by(
            &lit,
            format!(
                "`{key} = {}` does not fit in a `{}`: write a number up to {}",
                lit.base10_digits(),
                N::TYPE,
                N::MAX
            ),
        );
        Ok(None)
    }
}

/// `key = some::path` (a type or a function), not a string.
fn path_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<Path> {
    let value = meta.value()?;
    let key = key_name(meta);
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        let message = match lit.parse::<Path>() {
            Ok(_) => format!(
                "`{key}` takes a path, not a string: write `{key} = {}` without quotes",
                lit.value().trim()
            ),
            Err(_) => format!("`{key}` takes a path: write `{key} = {example}`"),
        };
        return Err(syn::Error::new(lit.span(), message));
    }
    value.parse::<Path>().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{key}` takes a path: write `{key} = {example}`"),
        )
    })
}

/// `crate = "path"` (a string, like serde's).
fn crate_path(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<Option<Path>> {
    let lit = lit_str(meta)?;
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
    let path = key_name(meta);
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
