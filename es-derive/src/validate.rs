//! The rules an input must follow, one function each, with why.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{Data, DeriveInput};

use crate::ast::EventRef;
use crate::ctxt::Ctxt;

/// An event is one struct: one fact, one stable name. An enum would give one
/// name to several facts, and generics would give one name to several
/// payload types, so neither could be decoded back unambiguously.
pub(crate) fn event_shape(cx: &Ctxt, input: &DeriveInput) {
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(e) => cx.error_spanned_by(
            e.enum_token,
            "`#[derive(Event)]` works on structs: derive it on one struct per event, and list them in `#[aggregate(events(...))]`",
        ),
        Data::Union(u) => cx.error_spanned_by(u.union_token, "`#[derive(Event)]` works on structs, not unions"),
    }
    no_generics(cx, input, "Event");
}

/// An aggregate's state can be a struct or an enum (a state machine); a
/// union cannot be folded safely. Generics are refused because the registry
/// and the stream names need one concrete aggregate type per name.
pub(crate) fn aggregate_shape(cx: &Ctxt, input: &DeriveInput) {
    if let Data::Union(u) = &input.data {
        cx.error_spanned_by(
            u.union_token,
            "`#[derive(Aggregate)]` works on structs and enums, not unions",
        );
    }
    no_generics(cx, input, "Aggregate");
}

fn no_generics(cx: &Ctxt, input: &DeriveInput, derive: &str) {
    if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &input.generics,
            format!("`#[derive({derive})]` does not support generic parameters: stored names need one concrete type; write the type without generics"),
        );
    }
}

// Names are checked by es-core's own rule (`es_core::name`) at compile time:
// the expansion asserts it in a constant, so the macro and the stores share
// one rule.

/// Schema versions count from 1, so 0 never appears in a store.
pub(crate) fn version(cx: &Ctxt, span: Span, version: u32) {
    if version == 0 {
        cx.syn_error(syn::Error::new(
            span,
            "versions start at 1: write `version = 1`",
        ));
    }
}

/// Each event once, and each variant name once: the generated enum has one
/// variant per event, named after the type.
pub(crate) fn distinct_events(cx: &Ctxt, events: &[EventRef]) {
    for (i, event) in events.iter().enumerate() {
        let path = event.path.to_token_stream().to_string();
        if events[..i]
            .iter()
            .any(|e| e.path.to_token_stream().to_string() == path)
        {
            cx.error_spanned_by(
                &event.path,
                format!("event `{}` is listed twice in `events(...)`", event.variant),
            );
        } else if events[..i].iter().any(|e| e.variant == event.variant) {
            cx.error_spanned_by(
                &event.path,
                format!(
                    "two listed events are named `{}`: the generated enum needs distinct variant names; rename one type or import it under another name (`use a::{0} as Other{0};`)",
                    event.variant
                ),
            );
        }
    }
}
