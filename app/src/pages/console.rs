//! The operator console: every charger on the network.

use crate::api::{network_chargers, SignOut};
use leptos::form::ActionForm;
use leptos::prelude::*;

#[component]
pub fn ConsolePage() -> impl IntoView {
    // The console is live: it asks again every few seconds (in the browser only).
    let tick = RwSignal::new(0u32);
    Effect::new(move |_| {
        let _ = set_interval_with_handle(move || tick.update(|t| *t += 1), std::time::Duration::from_secs(5));
    });
    let chargers = Resource::new(move || tick.get(), |_| network_chargers());
    let sign_out = ServerAction::<SignOut>::new();
    view! {
        <main class="mx-auto max-w-5xl p-6 space-y-4">
            <div class="flex items-center justify-between">
                <h1 class="text-2xl font-bold">"Operator console"</h1>
                <ActionForm action=sign_out><button class="underline" type="submit">"Sign out"</button></ActionForm>
            </div>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match chargers.await {
                        Ok(rows) => view! {
                            <table class="w-full text-left" data-testid="charger-table">
                                <thead><tr><th>"Charger"</th><th>"Site"</th><th>"Retailer"</th><th>"Connectors"</th><th>"Status"</th><th>"Sessions"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|r| { let status_id = format!("status-{}", r.charger_id); view! {
                                        <tr class="border-t">
                                            <td class="font-mono">{r.charger_id}</td><td>{r.site_name}</td>
                                            <td>{r.retailer_name}</td><td>{r.connectors}</td>
                                            <td data-testid=status_id>{r.status}</td><td>{r.active_sessions}</td>
                                        </tr>
                                    }}).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <super::SignInPrompt message=super::error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}
