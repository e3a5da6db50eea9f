//! Expansion snapshots: the generated code, pretty-printed, reviewed in
//! `src/expand/snapshots/`.

use quote::quote;
use syn::parse_quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as Rust");
    prettyplease::unparse(&file)
}

#[test]
fn event_plain() {
    let input = parse_quote! {
        #[event(name = "ticket-opened")]
        pub struct TicketOpened { pub title: String }
    };
    insta::assert_snapshot!(pretty(super::event::derive(&input).expect("valid input")));
}

#[test]
fn event_with_upcast() {
    let input = parse_quote! {
        #[event(name = "ticket-escalated", version = 2, upcast_from = TicketEscalatedV1, crate = "my_es")]
        pub struct TicketEscalated { pub reason: String }
    };
    insta::assert_snapshot!(pretty(super::event::derive(&input).expect("valid input")));
}

#[test]
fn aggregate_with_snapshots() {
    let input = parse_quote! {
        #[aggregate(name = "ticket", events(TicketOpened, events::TicketClosed), snapshot(every = 100))]
        pub struct Ticket { open: bool }
    };
    insta::assert_snapshot!(pretty(
        super::aggregate::derive(&input).expect("valid input")
    ));
}

#[test]
fn expansion_is_deterministic() {
    let input: syn::DeriveInput = parse_quote! {
        #[aggregate(events(A, B, C))]
        struct Thing;
    };
    let a = super::aggregate::derive(&input).expect("valid").to_string();
    let b = super::aggregate::derive(&input).expect("valid").to_string();
    assert_eq!(a, b);
}

#[test]
fn all_errors_of_one_input_are_reported() {
    let input: syn::DeriveInput = parse_quote! {
        #[aggregate(nme = "x", events(A, A), snapshot(every = 0))]
        struct Thing<T>(T);
    };
    let error = super::aggregate::derive(&input).expect_err("invalid input");
    let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 4, "{messages:#?}");
    let _ = quote!();
}
