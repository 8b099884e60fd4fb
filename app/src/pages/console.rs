//! The operator console: every charger on the network.

use crate::api::{network_chargers, SignOut};
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn ConsolePage() -> impl IntoView {
    let chargers = Resource::new(|| (), |_| network_chargers());
    let sign_out = ServerAction::<SignOut>::new();
    view! {
        <main class="mx-auto max-w-5xl p-6 space-y-4">
            <div class="flex items-center justify-between">
                <h1 class="text-2xl font-bold">"Operator console"</h1>
                <ActionForm action=sign_out><button class="underline" type="submit">"Sign out"</button></ActionForm>
            </div>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match chargers.await {
                        Ok(rows) => view! {
                            <table class="w-full text-left" data-testid="charger-table">
                                <thead><tr><th>"Charger"</th><th>"Site"</th><th>"Retailer"</th><th>"Connectors"</th><th>"Status"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|r| view! {
                                        <tr class="border-t">
                                            <td class="font-mono">{r.charger_id}</td><td>{r.site_name}</td>
                                            <td>{r.retailer_name}</td><td>{r.connectors}</td><td>{r.status}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <super::SignInPrompt message=super::error_text(&err)/> }.into_any(),
                    }
                })}
            </Suspense>
        </main>
    }
}
