//! The model the expansions work from: attributes resolved to their final
//! values (defaults applied), the user's syntax kept for spans.
//!
//! Building the model never fails and checks nothing: what is wrong with it
//! is `validate`'s to say, and an invalid model still feeds the fallback
//! stubs (`fallback`).

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::{Attribute, DeriveInput, Ident, Path, Visibility};

use crate::attr::{AggregateAttrs, EventAttrs, EventsAttr, Number, ProjectionAttrs};
use crate::case::kebab_case;
use crate::ctxt::Ctxt;

/// A `#[derive(Event)]` input.
pub(crate) struct EventInput<'a> {
    /// The whole input, for the checks of its shape.
    pub(crate) original: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) name: Name,
    pub(crate) version: Version,
    /// `upcast_from = Previous`: the previous link of the upcast chain.
    pub(crate) upcast_from: Option<Path>,
    /// The fields marked `#[personal(subject = other_field)]`.
    pub(crate) personal: Vec<PersonalSubject>,
    pub(crate) krate: Path,
}

/// `#[personal(subject = customer_id)]` on the field `email`: the data
/// subject of `email`'s personal values is the value of `customer_id`.
pub(crate) struct PersonalSubject {
    /// The field, as written.
    pub(crate) field: Ident,
    /// Its key in the payload (its `#[serde(rename = "..")]`, or its name).
    pub(crate) field_key: String,
    /// The subject field, as written.
    pub(crate) subject: Ident,
}

/// A `#[derive(Aggregate)]` input.
pub(crate) struct AggregateInput<'a> {
    /// The whole input, for the checks of its shape.
    pub(crate) original: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) name: Name,
    /// The generated event enum and the events it lists.
    pub(crate) events: EventEnum<'a>,
    pub(crate) snapshot: Option<Snapshot>,
    /// `conflicts = path`: the function deciding whether events conflict.
    pub(crate) conflicts: Option<Path>,
    pub(crate) krate: Path,
}

/// A `#[derive(Projection)]` input.
pub(crate) struct ProjectionInput<'a> {
    /// The whole input, for the checks of its shape.
    pub(crate) original: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) name: Name,
    pub(crate) version: Version,
    /// The generated event enum and the events it lists.
    pub(crate) events: EventEnum<'a>,
    /// `aggregates(...)`: the aggregate types whose streams it takes events
    /// from; `None`: any aggregate's.
    pub(crate) aggregates: Option<AggregateList>,
    /// `context = Cx`: a read model handed `Cx` by its runner
    /// (`Dispatch<Cx>`); `None`: a per-stream projection (`Apply`).
    pub(crate) context: Option<Path>,
    pub(crate) krate: Path,
}

/// The derive that generates an event enum, for its docs and messages.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    Aggregate,
    Projection,
}

impl Owner {
    /// The derive's name: `Aggregate`.
    pub(crate) fn derive(self) -> &'static str {
        match self {
            Owner::Aggregate => "Aggregate",
            Owner::Projection => "Projection",
        }
    }
}

/// The event enum an aggregate or a projection generates (`<Type>Event`),
/// with one variant per listed event: the same code for both derives.
pub(crate) struct EventEnum<'a> {
    pub(crate) owner: Owner,
    /// The type deriving it.
    pub(crate) ty: &'a Ident,
    /// The type's visibility, which the enum gets.
    pub(crate) vis: &'a Visibility,
    /// The enum's name: `<Type>Event`.
    pub(crate) ident: Ident,
    pub(crate) list: EventList<'a>,
}

/// A stored name: the one given, or the kebab-case of the type.
pub(crate) struct Name {
    pub(crate) value: String,
    /// Where it comes from: the `name = "..."` literal, or the type.
    pub(crate) span: Span,
}

/// A schema version.
#[derive(Clone, Copy)]
pub(crate) struct Version {
    pub(crate) number: u32,
    /// The literal, or `None` when the version is the default 1.
    pub(crate) span: Option<Span>,
}

/// What `events(...)` says.
pub(crate) enum EventList<'a> {
    /// No `events` key; the first `#[aggregate]` (`#[projection]`)
    /// attribute, if any.
    Missing(Option<&'a Attribute>),
    /// An `events` key that is not a list (already reported by `attr`).
    Malformed,
    /// `events(...)`, in source order, and the span of the `events` key.
    Listed(Span, Vec<EventRef>),
}

/// One event listed in `events(...)`.
pub(crate) struct EventRef {
    /// The path as the user wrote it.
    pub(crate) path: Path,
    /// The enum variant: the path's last segment.
    pub(crate) variant: Ident,
}

/// `aggregates(A, b::B, ...)`.
pub(crate) struct AggregateList {
    /// The `aggregates` key.
    pub(crate) span: Span,
    /// The types as the user wrote them, in source order.
    pub(crate) paths: Vec<Path>,
}

/// `snapshot(every = N, version = V)`.
pub(crate) struct Snapshot {
    /// The `snapshot` key.
    pub(crate) span: Span,
    pub(crate) every: Option<Number<u64>>,
    pub(crate) version: Version,
}

/// A path as the user wrote it, for docs and messages: `events::TicketClosed`
/// (without generic arguments).
pub(crate) fn path_text(path: &Path) -> String {
    let segments = path.segments.iter().map(|s| s.ident.to_string());
    let text = segments.collect::<Vec<_>>().join("::");
    if path.leading_colon.is_some() {
        format!("::{text}")
    } else {
        text
    }
}

fn default_krate() -> Path {
    syn::parse_quote!(::es_core)
}

fn name(given: Option<&syn::LitStr>, ident: &Ident) -> Name {
    match given {
        Some(lit) => Name {
            value: lit.value(),
            span: lit.span(),
        },
        None => Name {
            value: kebab_case(&ident.unraw().to_string()),
            span: ident.span(),
        },
    }
}

fn version(given: Option<&Number<u32>>) -> Version {
    match given {
        Some(n) => Version {
            number: n.value,
            span: Some(n.span),
        },
        None => Version {
            number: 1,
            span: None,
        },
    }
}

impl<'a> EventInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> EventInput<'a> {
        let attrs = EventAttrs::from_attrs(cx, &input.attrs);
        EventInput {
            original: input,
            ident: &input.ident,
            name: name(attrs.name.get(), &input.ident),
            version: version(attrs.version.get()),
            upcast_from: attrs.upcast_from.get().cloned(),
            personal: personal_subjects(cx, input),
            krate: attrs.krate.get().cloned().unwrap_or_else(default_krate),
        }
    }

    /// The payload key of the field named `ident`, if the struct has one.
    pub(crate) fn field_key(&self, ident: &Ident) -> Option<String> {
        let syn::Data::Struct(data) = &self.original.data else {
            return None;
        };
        data.fields
            .iter()
            .find(|f| f.ident.as_ref() == Some(ident))
            .map(serde_key)
    }
}

/// The `#[personal(subject = field)]` attributes of the fields of `input`;
/// malformed ones are reported and skipped.
fn personal_subjects(cx: &Ctxt, input: &DeriveInput) -> Vec<PersonalSubject> {
    let syn::Data::Struct(data) = &input.data else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for field in &data.fields {
        let mut seen = false;
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("personal")) {
            let Some(ident) = &field.ident else {
                cx.error_spanned_by(attr, "`#[personal(subject = ..)]` is for a named field");
                continue;
            };
            if seen {
                cx.error_spanned_by(attr, "a second `#[personal(...)]` on one field; keep one");
                continue;
            }
            seen = true;
            let write = "write `#[personal(subject = field)]`, naming the field that holds the data subject's id";
            if matches!(attr.meta, syn::Meta::Path(_)) {
                cx.error_spanned_by(attr, write);
                continue;
            }
            let mut subject = None;
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("subject") {
                    subject = Some(meta.value()?.parse::<Ident>()?);
                    Ok(())
                } else {
                    Err(meta.error(
                        "unknown key in `#[personal(...)]`; write `#[personal(subject = field)]`",
                    ))
                }
            });
            if let Err(e) = parsed {
                cx.syn_error(e);
                continue;
            }
            match subject {
                Some(subject) => found.push(PersonalSubject {
                    field: ident.clone(),
                    field_key: serde_key(field),
                    subject,
                }),
                None => cx.error_spanned_by(attr, write),
            }
        }
    }
    found
}

/// A field's key in the JSON payload: its `#[serde(rename = "..")]`, or its
/// name.
fn serde_key(field: &syn::Field) -> String {
    let mut key = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        // Other serde keys are serde's to check: only `rename` matters here.
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") && meta.input.peek(syn::Token![=]) {
                let lit: syn::LitStr = meta.value()?.parse()?;
                key = Some(lit.value());
            } else if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _ = meta.parse_nested_meta(|inner| {
                    if inner.input.peek(syn::Token![=]) {
                        let _: syn::Expr = inner.value()?.parse()?;
                    }
                    Ok(())
                });
            }
            Ok(())
        });
    }
    key.unwrap_or_else(|| {
        field
            .ident
            .as_ref()
            .map(|i| i.unraw().to_string())
            .unwrap_or_default()
    })
}

impl<'a> AggregateInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> AggregateInput<'a> {
        let attrs = AggregateAttrs::from_attrs(cx, &input.attrs);
        let snapshot = attrs.snapshot.spanned().map(|(span, s)| Snapshot {
            span,
            every: s.every.get().copied(),
            version: version(s.version.get()),
        });
        AggregateInput {
            original: input,
            ident: &input.ident,
            name: name(attrs.name.get(), &input.ident),
            events: EventEnum::new(Owner::Aggregate, input, &attrs.events),
            snapshot,
            conflicts: attrs.conflicts.get().cloned(),
            krate: attrs.krate.get().cloned().unwrap_or_else(default_krate),
        }
    }
}

impl<'a> ProjectionInput<'a> {
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> ProjectionInput<'a> {
        let attrs = ProjectionAttrs::from_attrs(cx, &input.attrs);
        ProjectionInput {
            original: input,
            ident: &input.ident,
            name: name(attrs.name.get(), &input.ident),
            version: version(attrs.version.get()),
            events: EventEnum::new(Owner::Projection, input, &attrs.events),
            aggregates: attrs
                .aggregates
                .spanned()
                .map(|(span, paths)| AggregateList {
                    span,
                    paths: paths.clone(),
                }),
            context: attrs.context.get().cloned(),
            krate: attrs.krate.get().cloned().unwrap_or_else(default_krate),
        }
    }
}

impl<'a> EventEnum<'a> {
    fn new(owner: Owner, input: &'a DeriveInput, attr: &EventsAttr<'a>) -> Self {
        let list = match attr.list.spanned() {
            Some((span, paths)) => {
                EventList::Listed(span, paths.iter().map(EventRef::new).collect())
            }
            None if attr.written => EventList::Malformed,
            None => EventList::Missing(attr.first_attr),
        };
        EventEnum {
            owner,
            ty: &input.ident,
            vis: &input.vis,
            ident: Ident::new(&format!("{}Event", input.ident.unraw()), Span::call_site()),
            list,
        }
    }

    /// The listed events, in source order (none when the list is missing).
    pub(crate) fn listed(&self) -> &[EventRef] {
        match &self.list {
            EventList::Listed(_, events) => events,
            EventList::Missing(_) | EventList::Malformed => &[],
        }
    }

    /// Where checks over the whole list are reported: the `events` key.
    pub(crate) fn span(&self) -> Span {
        match &self.list {
            EventList::Listed(span, _) => *span,
            EventList::Missing(_) | EventList::Malformed => self.ty.span(),
        }
    }
}

impl EventRef {
    fn new(path: &Path) -> Self {
        let variant = path.segments.last().map_or_else(
            // `Path` parsing guarantees a segment; this is never used.
            || Ident::new("Event", Span::call_site()),
            |last| last.ident.clone(),
        );
        EventRef {
            path: path.clone(),
            variant,
        }
    }

    /// Whether the path is a plain type, without generic arguments.
    pub(crate) fn is_concrete(&self) -> bool {
        self.path.segments.iter().all(|s| s.arguments.is_none())
    }
}
