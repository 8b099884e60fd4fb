//! The operator console: every charger on the network, and each site's live load.

use crate::api::{
    amps, live_site_load, network_alerts, network_chargers, ConnectorLoad, ForgetReadingsBeforeDrop,
    MeterDoubt, MeterSetAside, NodeLoad, SetSessionPriority, SiteAlert, SiteAlertKind, SiteLoad,
};
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
pub fn ConsolePage() -> impl IntoView {
    let tick = super::ticking(5);
    let chargers = Resource::new(move || tick.get(), |_| network_chargers());
    let alerts = Resource::new(move || tick.get(), |_| network_alerts());
    view! {
        <main class="mx-auto max-w-5xl p-6 space-y-4">
            <div class="flex items-center justify-between">
                <h1 class="text-2xl font-bold">"Operator console"</h1>
                <super::AccountBar/>
            </div>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    // Errors (signed out) are shown once, by the chargers' table below.
                    alerts.await.ok().filter(|a| !a.is_empty()).map(|alerts| view! { <SiteAlerts alerts/> })
                })}
            </Transition>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match chargers.await {
                        Ok(rows) => view! {
                            <table class="w-full text-left" data-testid="charger-table">
                                <thead><tr><th>"Charger"</th><th>"Site"</th><th>"Retailer"</th><th>"Connectors"</th><th>"Status"</th><th>"Sessions"</th></tr></thead>
                                <tbody>
                                    {rows.into_iter().map(|r| { let status_id = format!("status-{}", r.charger_id); view! {
                                        <tr class="border-t">
                                            <td class="font-mono">{r.charger_id}</td>
                                            <td><a class="text-blue-700 underline" href=format!("/console/sites/{}", r.site_id)>{r.site_name}</a></td>
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

/// "40 s", "12 min", "3 h 5 min".
fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// The sites whose balancing wants a look, worst first, each linking to its live load.
#[component]
fn SiteAlerts(alerts: Vec<SiteAlert>) -> impl IntoView {
    view! {
        <section class="rounded border border-amber-300 bg-amber-50 p-3 space-y-1" data-testid="site-alerts">
            <h2 class="font-semibold">"Sites that need a look"</h2>
            <ul>
                {alerts.into_iter().map(|a| {
                    let what = match a.alert {
                        SiteAlertKind::Overcommitted => "over a limit: the store rose faster than it was counted",
                        SiteAlertKind::StoreMeterSetAside(MeterDoubt::FarBelowFloor) => "store meter reads far below anything it read in four weeks: worst case counted",
                        SiteAlertKind::StoreMeterSetAside(MeterDoubt::Unchanged) => "store meter repeats the very same reading: worst case counted",
                        SiteAlertKind::StoreMeterSilent => "store meter stopped reporting: worst case counted",
                    };
                    let test_id = format!("site-alert-{}", a.site_id);
                    view! {
                        <li data-testid=test_id>
                            <a class="text-blue-700 underline" href=format!("/console/sites/{}", a.site_id)>{a.site_name}</a>
                            " (" {a.retailer_name} "): " {what}
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}

/// One site's live load: what each phase of the grid connection and of every circuit carries
/// against its limit, and what each connector is given and draws. Asks again every 2 s.
#[component]
pub fn SiteLoadPage() -> impl IntoView {
    let params = use_params_map();
    let tick = super::ticking(2);
    // Lives outside the refreshing view, so a click's answer is not lost when the table is redrawn.
    let set_priority = ServerAction::<SetSessionPriority>::new();
    provide_context(set_priority);
    let forget = ServerAction::<ForgetReadingsBeforeDrop>::new();
    provide_context(forget);
    Effect::new(move |_| {
        // Show a new priority, or the meter believed again, at once rather than at the next tick.
        if set_priority.version().get() + forget.version().get() > 0 {
            tick.update(|t| *t += 1);
        }
    });
    let site = move || params.read().get("site").and_then(|s| s.parse::<i64>().ok());
    let load = Resource::new(
        move || (site(), tick.get()),
        |(site, _)| async move {
            match site {
                Some(site) => live_site_load(site).await,
                None => Err(ServerFnError::new("that is not a site number")),
            }
        },
    );
    view! {
        <main class="mx-auto max-w-5xl p-6 space-y-6">
            <a class="text-blue-700 underline" href="/console">"All chargers"</a>
            {move || set_priority.value().get().and_then(|r| r.err()).map(|err| view! {
                <p class="rounded border border-red-300 bg-red-50 p-3" data-testid="priority-error">
                    {super::error_text(&err)}
                </p>
            })}
            {move || forget.value().get().map(|r| match r {
                Ok(n) => view! {
                    <p class="rounded border border-emerald-300 bg-emerald-50 p-3" data-testid="forget-result">
                        {format!("{n} readings from before the drop forgotten: the meter is believed again, and the store's rise is learned anew (the configured bound counts meanwhile).")}
                    </p>
                }.into_any(),
                Err(err) => view! {
                    <p class="rounded border border-red-300 bg-red-50 p-3" data-testid="forget-result">
                        {super::error_text(&err)}
                    </p>
                }.into_any(),
            })}
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match load.await {
                        Ok(load) => view! { <SiteLoadView load site=site().unwrap_or_default()/> }.into_any(),
                        Err(err) => view! { <super::SignInPrompt message=super::error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn SiteLoadView(load: SiteLoad, site: i64) -> impl IntoView {
    let SiteLoad {
        site_name,
        retailer_name,
        nodes,
        store_worst_case,
        store_meter_set_aside,
        store_rise_learned,
        overcommitted,
        connectors,
        max_priority,
        can_manage,
    } = load;
    let store_note = if let Some(MeterSetAside { why, for_s }) = store_meter_set_aside {
        let what = match why {
            MeterDoubt::FarBelowFloor => "The store meter reads far below anything it read in four weeks (a loose current clamp?): its readings are set aside and its worst case is counted. Check the meter; if the store truly draws that little now, have its readings from before the change forgotten.",
            MeterDoubt::Unchanged => "The store meter has sent the very same reading for too long (a gateway that lost its meter?): its readings are set aside and its worst case is counted. Check the meter.",
        };
        format!("{what} Set aside for {}.", duration(for_s))
    } else if store_worst_case {
        "The store meter is stale or missing: its worst case is counted.".to_owned()
    } else if store_rise_learned {
        "Store: its latest reading plus the rise its meter has shown it can make before we see it.".to_owned()
    } else {
        "Store: its latest reading plus the configured rise (its meter's history is still short).".to_owned()
    };
    view! {
        <div>
            <h1 class="text-2xl font-bold" data-testid="site-name">{site_name}</h1>
            <p class="text-slate-600">{retailer_name}" · live load, every 2 s"</p>
        </div>
        {overcommitted.then(|| view! {
            <p class="rounded border border-red-300 bg-red-50 p-3" data-testid="overcommitted">
                "Over a limit: the store rose faster than it was counted; decreases are on their way."
            </p>
        })}
        <p class=if store_worst_case || store_meter_set_aside.is_some() { "rounded border border-amber-300 bg-amber-50 p-3" } else { "text-slate-600" }
            data-testid="store-note">{store_note}</p>
        {store_meter_set_aside
            .filter(|s| s.why == MeterDoubt::FarBelowFloor && can_manage)
            .and(use_context::<ServerAction<ForgetReadingsBeforeDrop>>())
            .map(|forget| view! {
                <button type="button" class="rounded bg-slate-800 px-3 py-1.5 text-white" data-testid="forget-before-drop"
                    on:click=move |_| { forget.dispatch(ForgetReadingsBeforeDrop { site }); }>
                    "The store truly draws less now: forget the meter's readings from before"
                </button>
            })}
        {nodes.into_iter().map(|node| view! { <NodeTable node/> }.into_any()).collect_view()}
        <ConnectorTable connectors max_priority/>
    }
}

const PHASES: [&str; 3] = ["L1", "L2", "L3"];

#[component]
fn NodeTable(node: NodeLoad) -> impl IntoView {
    let (title, key) = match &node.circuit {
        None => ("Grid connection".to_owned(), "grid".to_owned()),
        Some(name) => (format!("Circuit {name}"), format!("circuit-{name}")),
    };
    let headroom = node.headroom_da();
    let rows = (0..3)
        .map(|k| {
            let id = |what: &str| format!("{key}-{}-{what}", PHASES[k]);
            // The bar: the store, then the cars' budgets, against the limit.
            let limit = f64::from(node.limit_da[k].max(1));
            let pct = |da: u32| format!("width: {:.1}%", (f64::from(da) / limit * 100.0).min(100.0));
            let cars = node.counted_da[k].saturating_sub(node.store_da[k]);
            view! {
                <tr class="border-t">
                    <td class="font-mono">{PHASES[k]}</td>
                    <td data-testid=id("limit")>{amps(node.limit_da[k])}</td>
                    <td data-testid=id("store")>{amps(node.store_da[k])}</td>
                    <td data-testid=id("allocated")>{amps(node.allocated_da[k])}</td>
                    <td data-testid=id("measured")>{amps(node.measured_da[k])}</td>
                    <td data-testid=id("headroom")>{amps(headroom[k])}</td>
                    <td class="w-1/3">
                        <div class="flex h-3 w-full overflow-hidden rounded bg-slate-200">
                            <div class="bg-slate-500" style=pct(node.store_da[k])></div>
                            <div class="bg-emerald-500" style=pct(cars)></div>
                        </div>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="space-y-2" data-testid=key.clone()>
            <h2 class="text-lg font-semibold">{title}</h2>
            <table class="w-full text-left [&_td]:pr-3 [&_th]:pr-3">
                <thead><tr>
                    <th>"Phase"</th><th>"Limit"</th><th>"Store"</th><th>"Given to cars"</th>
                    <th>"Cars measured"</th><th>"Headroom"</th><th>"Store / cars"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}

#[component]
fn ConnectorTable(connectors: Vec<ConnectorLoad>, max_priority: u8) -> impl IntoView {
    let set_priority = use_context::<ServerAction<SetSessionPriority>>();
    view! {
        <section class="space-y-2">
            <h2 class="text-lg font-semibold">"Connectors"</h2>
            <table class="w-full text-left [&_td]:pr-3 [&_th]:pr-3" data-testid="connector-load">
                <thead><tr>
                    <th>"Charger"</th><th>"Connector"</th><th>"Circuit"</th><th>"Charger online"</th><th>"Car"</th><th>"What we know of it"</th>
                    <th>"Steering"</th><th>"Plan"</th><th>"Accepted"</th><th>"Measured L1 / L2 / L3"</th>
                </tr></thead>
                <tbody>
                    {connectors.into_iter().map(|c| {
                        let id = |what: &str| format!("{}-{}-{what}", c.charger_id, c.connector_no);
                        let measured = c.measured_da.map(amps).join(" / ");
                        view! {
                            <tr class="border-t">
                                <td class="font-mono">{c.charger_id.clone()}</td><td>{c.connector_no}</td>
                                <td data-testid=id("circuit")>{c.circuit.clone().unwrap_or_else(|| "–".to_owned())}</td>
                                <td data-testid=id("online")>{if c.online { "yes" } else { "no" }}</td>
                                <td data-testid=id("car")>{match &c.car {
                                    // Idle: what its own default lets a car plugging in draw.
                                    None if c.accepted_da == 0 => "none (a car waits for its limit)".to_owned(),
                                    None => format!("none (a car starts at {})", amps(c.accepted_da)),
                                    Some(car) if car.waiting => "waiting its turn".to_owned(),
                                    Some(_) => "charging".to_owned(),
                                }}</td>
                                <td class="text-sm text-slate-600">
                                    <span data-testid=id("car-details")>{c.car.as_ref().map(|car| car.details())}</span>
                                    {c.car.as_ref().zip(set_priority).map(|(car, action)| {
                                        let (session, current) = (car.session, car.priority);
                                        view! {
                                            <span class="ml-2 whitespace-nowrap">"Priority "
                                                {(0..=max_priority).map(|priority| view! {
                                                    <button type="button" data-testid=id(&format!("priority-{priority}"))
                                                        class=if priority == current { "mx-0.5 rounded bg-slate-800 px-1.5 text-white" } else { "mx-0.5 rounded border px-1.5" }
                                                        on:click=move |_| { action.dispatch(SetSessionPriority { session, priority }); }>
                                                        {priority}
                                                    </button>
                                                }).collect_view()}
                                            </span>
                                        }
                                    })}
                                </td>
                                <td>{c.steering.clone()}</td>
                                <td data-testid=id("plan")>{amps(c.target_da)}</td>
                                <td data-testid=id("accepted")>{amps(c.accepted_da)}</td>
                                <td data-testid=id("measured")>{measured}</td>
                            </tr>
                        }.into_any()
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_in_the_largest_sensible_unit() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(60), "1 min");
        assert_eq!(duration(3599), "59 min");
        assert_eq!(duration(3600 + 5 * 60 + 59), "1 h 5 min");
    }
}
