//! The rules an input must follow, one function each, with why.
//!
//! Every rule pushes its errors into the [`Ctxt`] and returns, so one build
//! reports every broken rule. Names are not checked here: es-core's own rule
//! (`es_core::name`) checks them at compile time in a constant the expansion
//! emits, so the macro and the stores share one rule.

use quote::ToTokens;
use syn::{Data, DeriveInput};

use crate::ast::{
    AggregateInput, AggregateList, EventEnum, EventInput, EventList, EventRef, Owner,
    ProjectionInput, Snapshot, Version, path_text,
};
use crate::ctxt::Ctxt;

/// Every rule of `#[derive(Event)]`.
pub(crate) fn event(cx: &Ctxt, input: &EventInput<'_>) {
    event_is_a_struct(cx, input.original);
    no_generics(cx, input.original, "Event");
    version_starts_at_one(cx, input.version, "");
    upcast_needs_own_version(cx, input);
    personal_subjects_are_fields(cx, input);
}

/// `#[personal(subject = x)]` names another field of the struct.
fn personal_subjects_are_fields(cx: &Ctxt, input: &EventInput<'_>) {
    for p in &input.personal {
        if p.subject == p.field {
            cx.error_spanned_by(
                &p.subject,
                format!(
                    "`{}` cannot be its own subject; name the field that holds the data subject's id",
                    p.field
                ),
            );
        } else if input.field_key(&p.subject).is_none() {
            cx.error_spanned_by(
                &p.subject,
                format!(
                    "`{}` has no field `{}`; name the field that holds the data subject's id",
                    input.ident, p.subject
                ),
            );
        }
    }
}

/// Every rule of `#[derive(Aggregate)]`.
pub(crate) fn aggregate(cx: &Ctxt, input: &AggregateInput<'_>) {
    state_is_not_a_union(cx, input.original, "Aggregate");
    no_generics(cx, input.original, "Aggregate");
    event_enum(cx, &input.events);
    if let Some(snapshot) = &input.snapshot {
        snapshot_has_every(cx, snapshot);
        version_starts_at_one(cx, snapshot.version, " in `snapshot(...)`");
    }
}

/// Every rule of `#[derive(Projection)]`.
pub(crate) fn projection(cx: &Ctxt, input: &ProjectionInput<'_>) {
    state_is_not_a_union(cx, input.original, "Projection");
    no_generics(cx, input.original, "Projection");
    event_enum(cx, &input.events);
    version_starts_at_one(cx, input.version, "");
    if let Some(aggregates) = &input.aggregates {
        aggregates_are_listed(cx, aggregates);
        aggregates_are_distinct(cx, aggregates);
    }
}

/// The rules of `events(...)`, the same for aggregates and projections.
fn event_enum(cx: &Ctxt, events: &EventEnum<'_>) {
    events_are_listed(cx, events);
    events_are_concrete(cx, events.listed());
    events_are_distinct(cx, events.listed());
}

/// An event is one struct: one fact, one stable name. An enum would give one
/// name to several facts, so it could not be decoded back unambiguously.
fn event_is_a_struct(cx: &Ctxt, input: &DeriveInput) {
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(e) => cx.error_spanned_by(
            e.enum_token,
            "`#[derive(Event)]` works on structs: derive it on one struct per event, and list them in `#[aggregate(events(...))]`",
        ),
        Data::Union(u) => cx.error_spanned_by(
            u.union_token,
            "`#[derive(Event)]` works on structs, not unions: write `struct` with the event's fields",
        ),
    }
}

/// An aggregate's or a projection's state can be a struct or an enum (a
/// state machine); a union cannot be folded or serialized safely.
fn state_is_not_a_union(cx: &Ctxt, input: &DeriveInput, derive: &str) {
    if let Data::Union(u) = &input.data {
        cx.error_spanned_by(
            u.union_token,
            format!("`#[derive({derive})]` works on structs and enums, not unions: write `struct` or `enum`"),
        );
    }
}

/// Generics would give one stored name to several Rust types, so a stored
/// event or stream could not say which one it is; the registry also needs
/// one concrete `'static` type per name.
fn no_generics(cx: &Ctxt, input: &DeriveInput, derive: &str) {
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &input.generics,
            format!("`#[derive({derive})]` does not support generic parameters: stored names need one concrete type; write the type without generics"),
        );
    }
}

/// Schema versions count from 1, so 0 never appears in a store and "no
/// version yet" is never confused with a real one.
fn version_starts_at_one(cx: &Ctxt, version: Version, place: &str) {
    if let (0, Some(span)) = (version.number, version.span) {
        cx.syn_error(syn::Error::new(
            span,
            format!("`version = 0`{place}: versions start at 1, write `version = 1`"),
        ));
    }
}

/// `upcast_from` links this event to its previous version, so this event
/// must say which version it is: with the default (1) there is no older
/// version to upcast from.
fn upcast_needs_own_version(cx: &Ctxt, input: &EventInput<'_>) {
    if let (Some(prev), None) = (&input.upcast_from, input.version.span) {
        cx.error_spanned_by(
            prev,
            "`upcast_from` needs this event's own `version`, higher than the previous one's: add `version = 2`",
        );
    }
}

/// The events are what the derive is for: the enum, its codec and the
/// dispatch. An aggregate or a projection without events could never
/// change, so a missing or empty list is a mistake.
fn events_are_listed(cx: &Ctxt, events: &EventEnum<'_>) {
    match &events.list {
        EventList::Missing(attr) => {
            let message = match events.owner {
                Owner::Aggregate => {
                    "missing `events(...)`: list the aggregate's events, e.g. `#[aggregate(events(TicketOpened, TicketClosed))]`"
                }
                Owner::Projection => {
                    "missing `events(...)`: list the events the projection handles, e.g. `#[projection(events(TicketOpened, TicketClosed))]`"
                }
            };
            match attr {
                Some(attr) => cx.error_spanned_by(attr, message),
                None => cx.error_spanned_by(events.ty, message),
            }
        }
        EventList::Listed(span, events) if events.is_empty() => {
            cx.syn_error(syn::Error::new(
                *span,
                "`events()` is empty: list at least one event type, e.g. `events(TicketOpened)`",
            ));
        }
        EventList::Listed(..) | EventList::Malformed => {}
    }
}

/// Each listed event becomes a variant named after its type and registers
/// one stored (name, version); a generic path would need a variant per
/// instantiation and give one name to several types.
fn events_are_concrete(cx: &Ctxt, events: &[EventRef]) {
    for event in events.iter().filter(|e| !e.is_concrete()) {
        cx.error_spanned_by(
            &event.path,
            "events cannot have generic arguments: list a non-generic struct with `#[derive(Event)]` instead",
        );
    }
}

/// Each event once, and each variant name once: the generated enum has one
/// variant per event, named after the type, and one `From` impl per type.
fn events_are_distinct(cx: &Ctxt, events: &[EventRef]) {
    let concrete: Vec<(&EventRef, String)> = events
        .iter()
        .filter(|e| e.is_concrete())
        .map(|e| (e, e.path.to_token_stream().to_string()))
        .collect();
    for (i, (event, path)) in concrete.iter().enumerate() {
        let earlier = &concrete[..i];
        if earlier.iter().any(|(_, p)| p == path) {
            cx.error_spanned_by(
                &event.path,
                format!(
                    "event `{}` is listed twice in `events(...)`: list each event once",
                    event.variant
                ),
            );
        } else if earlier.iter().any(|(e, _)| e.variant == event.variant) {
            cx.error_spanned_by(
                &event.path,
                format!(
                    "two listed events are named `{0}`: the generated enum needs distinct variant names; rename one type or import it under another name (`use a::{0} as Other{0};`)",
                    event.variant
                ),
            );
        }
    }
}

/// `aggregates(...)` limits a projection to the streams of the listed
/// aggregate types, and no list at all means any aggregate's: an empty list
/// would read as "none" but mean "any", so it is refused.
fn aggregates_are_listed(cx: &Ctxt, aggregates: &AggregateList) {
    if aggregates.paths.is_empty() {
        cx.syn_error(syn::Error::new(
            aggregates.span,
            "`aggregates()` is empty: list the aggregate types whose events the projection takes, e.g. `aggregates(Lead)`, or remove it to take any aggregate's events",
        ));
    }
}

/// Each aggregate once: a second listing changes nothing, so it is a slip
/// (often a type meant to be another one). Types listed under two paths are
/// caught by es-core's `check_distinct_aggregates`, on their stored names.
fn aggregates_are_distinct(cx: &Ctxt, aggregates: &AggregateList) {
    let written: Vec<String> = aggregates
        .paths
        .iter()
        .map(|p| p.to_token_stream().to_string())
        .collect();
    for (i, (path, text)) in aggregates.paths.iter().zip(&written).enumerate() {
        if written[..i].contains(text) {
            cx.error_spanned_by(
                path,
                format!(
                    "aggregate `{}` is listed twice in `aggregates(...)`: list each aggregate once",
                    path_text(path)
                ),
            );
        }
    }
}

/// A snapshot policy without a frequency means nothing; no default is
/// guessed, because how often to snapshot is the point of declaring one.
fn snapshot_has_every(cx: &Ctxt, snapshot: &Snapshot) {
    match snapshot.every {
        None => cx.syn_error(syn::Error::new(
            snapshot.span,
            "`snapshot(...)` needs `every = N`: write `snapshot(every = 100)`",
        )),
        Some(every) if every.value == 0 => cx.syn_error(syn::Error::new(
            every.span,
            "`every = 0`: a snapshot is taken every N versions, so N must be 1 or more; write `every = 100`",
        )),
        Some(_) => {}
    }
}
