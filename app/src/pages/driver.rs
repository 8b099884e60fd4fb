//! The page a driver lands on after scanning a charger's QR code, in the retailer's colours.

use crate::api::{connector_page, my_charge_plan, DriverConnector, StateChargePlan};
use crate::domain::kwh_text;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

#[component]
pub fn DriverPage() -> impl IntoView {
    let params = use_params_map();
    let page = Resource::new(
        move || {
            let p = params.read();
            (p.get("charger").unwrap_or_default(), p.get("connector").and_then(|c| c.parse::<u32>().ok()))
        },
        |(charger, connector)| async move {
            match connector {
                Some(n) => connector_page(charger, n).await,
                None => Err(ServerFnError::new("that is not a connector number")),
            }
        },
    );
    view! {
        <Suspense fallback=|| view! { <p class="p-8">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) => view! { <Branded page/> }.into_any(),
                    Err(err) => view! {
                        <main class="mx-auto max-w-md p-8" data-testid="driver-error">
                            <h1 class="text-xl font-bold">"We could not find this charger"</h1>
                            <p>{super::error_text(&err)}</p>
                        </main>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Branded(page: DriverConnector) -> impl IntoView {
    let show_prices = RwSignal::new(false);
    let theme = page.theme.clone();
    let examples = page.example_costs();
    let kw = crate::api::tenths(page.max_power_kw_tenths, "kW");
    let charger_id = page.charger_id.clone();
    let connector_no = page.connector_no;
    let support_phone = theme.support.phone.clone();
    let support_email = theme.support.email.clone();
    view! {
        <div style=theme.css_variables() class="min-h-screen bg-surface text-ink" data-testid="brand-root">
            <header class="bg-brand text-brand-ink px-5 py-4 flex items-center gap-3" data-testid="brand-header">
                {theme.logo_url().map(|src| view! { <img src=src alt="" class="h-8 w-8"/> })}
                <span class="text-lg font-semibold">{theme.name.clone()}</span>
            </header>
            <main class="mx-auto max-w-md p-5 space-y-5">
                <section>
                    <h1 class="text-2xl font-bold">{page.site_name.clone()}</h1>
                    <p class="text-sm opacity-80">{page.site_address.clone()}</p>
                    <p class="mt-2">
                        "Charger " <span class="font-mono">{page.charger_id.clone()}</span>
                        " · connector " {page.connector_no} " · up to " {kw}
                    </p>
                    <p class="mt-1" data-testid="connector-status">"Status: " {page.status.clone()}</p>
                </section>
                <section class="rounded-xl bg-white/80 p-4 shadow-sm">
                    <p class="text-3xl font-bold" data-testid="price-per-kwh">
                        {page.tariff.per_kwh().to_string()} <span class="text-base font-normal">" per kWh"</span>
                    </p>
                    <button
                        class="mt-3 rounded-lg bg-accent px-4 py-2 font-semibold text-ink"
                        data-testid="toggle-prices"
                        on:click=move |_| show_prices.update(|s| *s = !*s)
                    >
                        {move || if show_prices.get() { "Hide price details" } else { "Show price details" }}
                    </button>
                    <Show when=move || show_prices.get()>
                        <ul class="mt-3 space-y-1" data-testid="price-details">
                            <li>"Session fee: " {page.tariff.session_fee().to_string()}</li>
                            {examples.iter().map(|(kwh, cost)| view! {
                                <li>{*kwh} " kWh costs " {cost.to_string()}</li>
                            }).collect_view()}
                        </ul>
                    </Show>
                </section>
                <PlanForm charger=charger_id connector=connector_no/>
                <footer class="text-sm" data-testid="support">
                    "Need help? "
                    {support_phone.map(|p| view! { <a class="underline" href=format!("tel:{p}")>{p.clone()}</a> " " })}
                    {support_email.map(|e| view! { <a class="underline" href=format!("mailto:{e}")>{e.clone()}</a> })}
                </footer>
            </main>
        </div>
    }
}

/// When the driver leaves and how much energy they want: the site's power is shared by it. The
/// phone keeps the plan (a cookie); it waits for the car to start here, or joins the charge that
/// has just started.
#[component]
fn PlanForm(charger: String, connector: u32) -> impl IntoView {
    let state = ServerAction::<StateChargePlan>::new();
    // The sticker's QR code opens this page with the connector's presence code (`?p=…`): the
    // proof that this phone is at the charger, sent with the plan.
    let query = use_query_map();
    let presence = move || query.read().get("p").unwrap_or_default();
    // The form is filled from the plan as saved (asked again only after a save, so that what the
    // driver is typing is never redrawn away); the sentence above it follows the charge live, so a
    // waiting plan shows the car's start without a reload.
    let asked_for = charger.clone();
    let mine =
        Resource::new(move || state.version().get(), move |_| my_charge_plan(asked_for.clone(), connector));
    let tick = super::ticking(10);
    let watched = charger.clone();
    let live = Resource::new(
        move || (state.version().get(), tick.get()),
        move |_| my_charge_plan(watched.clone(), connector),
    );
    view! {
        <section class="rounded-xl bg-white/80 p-4 shadow-sm space-y-3" data-testid="plan">
            <h2 class="text-lg font-semibold">"Plan your charge"</h2>
            <p class="text-sm opacity-80">
                "Tell us when you leave and how much you need: the site's power is shared so that every car gets what it needs in time."
            </p>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    live.await.ok().flatten().map(|p| view! { <p class="font-semibold" data-testid="plan-summary">{p.summary()}</p> })
                })}
            </Transition>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || {
                    let charger = charger.clone();
                    Suspend::new(async move {
                        let current = mine.await.ok().flatten();
                        let leave_at = current.and_then(|p| p.leave_at).map(|t| t.to_string()).unwrap_or_default();
                        let energy = current
                            .and_then(|p| p.energy_wh)
                            .map(|wh| kwh_text(wh).trim_end_matches(" kWh").to_owned())
                            .unwrap_or_default();
                        view! {
                            <ActionForm action=state attr:class="space-y-3">
                                <input type="hidden" name="charger" value=charger/>
                                <input type="hidden" name="connector" value=connector/>
                                <input type="hidden" name="presence" value=presence()/>
                                <label class="block">
                                    "I leave at "
                                    <input type="time" name="leave_at" value=leave_at class="rounded border px-2 py-1" data-testid="plan-leave-at"/>
                                </label>
                                <label class="block">
                                    "I need about "
                                    <input type="text" inputmode="decimal" name="energy_kwh" value=energy size="5"
                                        class="rounded border px-2 py-1" placeholder="20" data-testid="plan-energy"/>
                                    " kWh"
                                </label>
                                <button type="submit" class="rounded-lg bg-brand px-4 py-2 font-semibold text-brand-ink" data-testid="plan-save">
                                    "Save my plan"
                                </button>
                            </ActionForm>
                        }
                    })
                }}
            </Transition>
            {move || state.value().get().and_then(|r| r.err()).map(|e| view! {
                <p class="text-red-700" role="alert" data-testid="plan-error">{super::error_text(&e)}</p>
            })}
        </section>
    }
}
