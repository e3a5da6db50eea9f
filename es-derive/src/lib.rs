//! Derive macros for [`es-core`](https://docs.rs/es-core):
//! `#[derive(Event)]`, `#[derive(Aggregate)]` and `#[derive(Projection)]`.
//!
//! Use them through `es_core` (`use es_core::prelude::*;`), which re-exports
//! them; the generated code names everything through `::es_core` (or the path
//! given with `crate = "..."`). See `es_core::Event`, `es_core::Aggregate`
//! and `es_core::Projection` for the attributes.
//!
//! Each derive parses its input into a model (`attr`, `ast`), checks every
//! rule (`validate`) collecting all errors before reporting them together,
//! then expands (`expand`), or, when the input is invalid, emits the errors
//! with stub impls so they are the only errors (`fallback`). Runtime logic
//! lives in es-core; the generated code only wires the user's types to it.

mod ast;
mod attr;
mod case;
mod ctxt;
mod expand;
mod fallback;
mod symbol;
mod validate;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `es_core::Event`: `#[event(name = "...", version = N, upcast_from = Previous, crate = "...")]`,
/// and `#[personal(subject = field)]` on a field holding `Personal` values
/// whose data subject another field names.
#[proc_macro_derive(Event, attributes(event, personal))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::event::derive(&input).into()
}

/// Derives `es_core::Aggregate` and generates its event enum:
/// `#[aggregate(name = "...", events(A, B, ...), snapshot(every = N, version = V),
/// conflicts = path::to_fn, crate = "...")]`.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::aggregate::derive(&input).into()
}

/// Derives `es_core::Projection` and generates its event enum:
/// `#[projection(name = "...", version = N, events(A, B, ...), aggregates(X, Y, ...),
/// context = Cx, crate = "...")]`.
///
/// - `events(A, b::B, ...)` (required): the events it handles, of any
///   aggregates; the enum `<Type>Event` gets one variant per event, named
///   after its type, and `From` for each.
/// - `aggregates(Lead, crm::Ticket, ...)`: the aggregate types (each an
///   `es_core::Aggregate`) whose streams it takes events from, as
///   `Projection::AGGREGATES`; without it, any aggregate's events of the
///   listed names, since event names are unique only within an aggregate.
/// - `name = "..."`: the stored name; the kebab-case of the type by default.
/// - `version = N`: the version of its logic and shape, 1 or more; 1 by
///   default.
/// - `context = Cx` (a type path): a read model, handed `Cx` by its runner:
///   the derive implements `es_core::Dispatch<Cx>`, which needs
///   `Handle<E, Cx>` for each event. Without it, a per-stream projection:
///   the derive implements `Apply<<Type>Event>`, which needs `Apply<E>` for
///   each event.
/// - `crate = "..."`: the path to es-core, when it is renamed.
#[proc_macro_derive(Projection, attributes(projection))]
pub fn derive_projection(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::projection::derive(&input).into()
}
