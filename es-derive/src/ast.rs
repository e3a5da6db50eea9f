//! The model the expansions work from: attributes resolved to their final
//! values (defaults applied), the user's syntax kept for spans.

use proc_macro2::Span;
use syn::{DeriveInput, Ident, Path, Visibility};

use crate::attr::{AggregateAttrs, EventAttrs};
use crate::case::kebab_case;
use crate::ctxt::Ctxt;
use crate::validate;

/// A `#[derive(Event)]` input.
pub(crate) struct EventInput<'a> {
    pub(crate) ident: &'a Ident,
    /// The stable name (given or the kebab-case of the type).
    pub(crate) name: String,
    /// Where the name comes from: the `name = "..."` literal, or the type.
    pub(crate) name_span: Span,
    pub(crate) version: u32,
    pub(crate) upcast_from: Option<Path>,
    pub(crate) krate: Path,
}

/// A `#[derive(Aggregate)]` input.
pub(crate) struct AggregateInput<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) name: String,
    /// Where the name comes from: the `name = "..."` literal, or the type.
    pub(crate) name_span: Span,
    /// The generated enum's name: `<Type>Event`.
    pub(crate) enum_ident: Ident,
    pub(crate) events: Vec<EventRef>,
    /// The `events` key, where checks over the whole list are reported.
    pub(crate) events_span: Span,
    pub(crate) snapshot: Option<Snapshot>,
    /// `conflicts = path`: the function deciding whether events conflict.
    pub(crate) conflicts: Option<Path>,
    pub(crate) krate: Path,
}

/// One event listed in `events(...)`.
pub(crate) struct EventRef {
    /// The path as the user wrote it.
    pub(crate) path: Path,
    /// The enum variant: the path's last segment.
    pub(crate) variant: Ident,
}

pub(crate) struct Snapshot {
    pub(crate) every: u64,
    pub(crate) version: u32,
}

fn default_krate() -> Path {
    syn::parse_quote!(::es_core)
}

impl<'a> EventInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> EventInput<'a> {
        let attrs = EventAttrs::from_attrs(cx, &input.attrs);
        validate::event_shape(cx, input);
        let (name, name_span) = match attrs.name.spanned() {
            Some((span, name)) => (name.clone(), span),
            None => (kebab_case(&input.ident.to_string()), input.ident.span()),
        };
        let version = match attrs.version.spanned() {
            Some((span, &version)) => {
                validate::version(cx, span, version);
                version
            }
            None => 1,
        };
        if let (Some(prev), None) = (attrs.upcast_from.get(), attrs.version.get()) {
            cx.error_spanned_by(prev, "`upcast_from` needs this event's own `version`, higher than the previous one's: add `version = 2`");
        }
        EventInput {
            ident: &input.ident,
            name,
            name_span,
            version,
            upcast_from: attrs.upcast_from.get().cloned(),
            krate: attrs.krate.get().cloned().unwrap_or_else(default_krate),
        }
    }
}

impl<'a> AggregateInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> AggregateInput<'a> {
        let attrs = AggregateAttrs::from_attrs(cx, &input.attrs);
        validate::aggregate_shape(cx, input);
        let (name, name_span) = match attrs.name.spanned() {
            Some((span, name)) => (name.clone(), span),
            None => (kebab_case(&input.ident.to_string()), input.ident.span()),
        };
        let events: Vec<EventRef> = if let Some(paths) = attrs.events.get() {
            paths
                .iter()
                .filter_map(|path| event_ref(cx, path))
                .collect()
        } else if attrs.events_written {
            Vec::new()
        } else {
            let span = attrs.first_attr.unwrap_or_else(|| input.ident.span());
            cx.syn_error(syn::Error::new(
                span,
                "missing `events(...)`: list the aggregate's events, e.g. `#[aggregate(events(TicketOpened, TicketClosed))]`",
            ));
            Vec::new()
        };
        if let Some((span, list)) = attrs.events.spanned()
            && list.is_empty()
        {
            cx.syn_error(syn::Error::new(
                span,
                "`events()` is empty: list at least one event type",
            ));
        }
        validate::distinct_events(cx, &events);
        let snapshot = attrs.snapshot.spanned().map(|(span, s)| {
            let every = if let Some((every_span, &every)) = s.every.spanned() {
                if every == 0 {
                    cx.syn_error(syn::Error::new(
                        every_span,
                        "`every` must be 1 or more: a snapshot every N versions",
                    ));
                }
                every
            } else {
                cx.syn_error(syn::Error::new(
                    span,
                    "`snapshot(...)` needs `every = N`, e.g. `snapshot(every = 100)`",
                ));
                1
            };
            let version = match s.version.spanned() {
                Some((version_span, &version)) => {
                    validate::version(cx, version_span, version);
                    version
                }
                None => 1,
            };
            Snapshot { every, version }
        });
        AggregateInput {
            ident: &input.ident,
            vis: &input.vis,
            enum_ident: Ident::new(&format!("{}Event", input.ident), Span::call_site()),
            name,
            name_span,
            events_span: attrs
                .events
                .spanned()
                .map_or_else(|| input.ident.span(), |(span, _)| span),
            events,
            snapshot,
            conflicts: attrs.conflicts.get().cloned(),
            krate: attrs.krate.get().cloned().unwrap_or_else(default_krate),
        }
    }
}

fn event_ref(cx: &Ctxt, path: &Path) -> Option<EventRef> {
    let last = path.segments.last()?;
    if !last.arguments.is_none() {
        cx.error_spanned_by(
            path,
            "events cannot have generic arguments: list a concrete event type",
        );
        return None;
    }
    Some(EventRef {
        path: path.clone(),
        variant: last.ident.clone(),
    })
}
