//! A retailer's dashboard: only that retailer's sites.

use crate::api::retailer_overview;
use leptos::prelude::*;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let overview = Resource::new(|| (), |_| retailer_overview());
    view! {
        <Suspense fallback=|| view! { <p class="p-6">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => view! {
                        <div style=o.theme.css_variables() class="min-h-screen bg-surface text-ink">
                            <header class="bg-brand text-brand-ink px-6 py-4 flex justify-between">
                                <span class="text-lg font-semibold" data-testid="retailer-name">{o.retailer_name.clone()}</span>
                                <super::AccountBar/>
                            </header>
                            <main class="mx-auto max-w-4xl p-6">
                                <h1 class="text-2xl font-bold mb-4">"Your sites"</h1>
                                <ul class="space-y-2" data-testid="site-list">
                                    {o.sites.into_iter().map(|s| view! {
                                        <li class="rounded bg-white/80 p-3">
                                            <span class="font-semibold">{s.site_name}</span> " — " {s.address}
                                            " · " {s.chargers} " chargers, " {s.connectors} " connectors"
                                        </li>
                                    }).collect_view()}
                                </ul>
                            </main>
                        </div>
                    }.into_any(),
                    Err(err) => view! { <main class="mx-auto max-w-xl p-6"><super::SignInPrompt message=super::error_text(&err)/></main> }.into_any(),
                }
            })}
        </Suspense>
    }
}
