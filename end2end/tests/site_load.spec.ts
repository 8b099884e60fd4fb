import { test, expect, Page } from "@playwright/test";
import { spawn } from "node:child_process";
import path from "node:path";
import { signIn } from "./helpers";

const bin = process.env.FORECOURT_BIN ?? path.resolve(__dirname, "../../target/debug/forecourt");


/** "12.5 A" as a number of amps. */
async function ampsOf(page: Page, testId: string): Promise<number> {
  const text = (await page.getByTestId(testId).textContent()) ?? "";
  const m = text.match(/^(\d+\.\d) A$/);
  expect(m, `${testId} reads "${text}"`).not.toBeNull();
  return Number(m![1]);
}

test("an operator watches a site's load live as a car starts, and it stays under the limit", async ({ page, baseURL }) => {
  await signIn(page, "operator@forecourt.local", "demo-operator-pass");
  await expect(page).toHaveURL(/\/console$/);
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  await page.getByRole("link", { name: "FreshMart Camden" }).first().click();
  await expect(page).toHaveURL(/\/console\/sites\/\d+$/);
  await expect(page.getByTestId("site-name")).toHaveText("FreshMart Camden");

  // No store meter has reported: the site's configured worst case (30 A) is counted.
  await expect(page.getByTestId("grid-L1-limit")).toHaveText("100.0 A");
  await expect(page.getByTestId("grid-L1-store")).toHaveText("30.0 A");
  await expect(page.getByTestId("store-note")).toContainText("worst case");
  await expect(page.getByTestId("FM-CAM-01-1-online")).toHaveText("no");
  // An idle connector at the site's 0 A fallback: a car plugging in waits for its first limit.
  await expect(page.getByTestId("FM-CAM-02-1-car")).toHaveText("none (a car waits for its limit)");
  await page.evaluate(() => ((window as any).__sameDocument = true));

  // A charger comes online over real OCPP (our simulator) and a car arrives within seconds.
  const ws = baseURL!.replace("http", "ws") + "/ocpp";
  let idle: ReturnType<typeof spawn> | undefined;
  const sim = spawn(bin, ["simulate", "--url", ws, "--charger", "FM-CAM-01:2", "--mean-idle", "1", "--mean-session", "600", "--duration", "40"], {
    stdio: "ignore",
  });
  try {
    await expect(page.getByTestId("FM-CAM-01-1-online")).toHaveText("yes", { timeout: 15_000 });
    await expect(page.getByTestId("FM-CAM-01-1-car")).toHaveText("charging", { timeout: 15_000 });
    await expect(page.getByTestId("FM-CAM-01-1-plan")).not.toHaveText("0.0 A", { timeout: 15_000 });
    // The charger accepts the limit and the car's meter reports what it draws.
    await expect(page.getByTestId("FM-CAM-01-1-accepted")).not.toHaveText("0.0 A", { timeout: 15_000 });
    await expect(page.getByTestId("FM-CAM-01-1-measured")).not.toHaveText("0.0 A / 0.0 A / 0.0 A", { timeout: 20_000 });
    await expect(page.getByTestId("grid-L1-measured")).not.toHaveText("0.0 A", { timeout: 5_000 });
    // Its phases are learned from those readings.
    await expect(page.getByTestId("FM-CAM-01-1-car-details")).toContainText(/^[13]-phase/, { timeout: 20_000 });
    for (const phase of ["L1", "L2", "L3"]) {
      const limit = await ampsOf(page, `grid-${phase}-limit`);
      const store = await ampsOf(page, `grid-${phase}-store`);
      const given = await ampsOf(page, `grid-${phase}-allocated`);
      expect(given).toBeGreaterThan(0);
      expect(store + given).toBeLessThanOrEqual(limit);
    }
    // The operator gives the car priority 2 (a driver called with a good reason): the balancer has it.
    await page.getByTestId("FM-CAM-01-1-priority-2").click();
    await expect(page.getByTestId("FM-CAM-01-1-car-details")).toContainText("priority 2", { timeout: 10_000 });
    await page.getByTestId("FM-CAM-01-1-priority-0").click();
    await expect(page.getByTestId("FM-CAM-01-1-car-details")).not.toContainText("priority", { timeout: 10_000 });
    // A second charger comes online with no car (its drivers are a day away).
    idle = spawn(bin, ["simulate", "--url", ws, "--charger", "FM-CAM-02:2", "--mean-idle", "86400", "--duration", "40"], {
      stdio: "ignore",
    });
    await expect(page.getByTestId("FM-CAM-02-1-online")).toHaveText("yes", { timeout: 15_000 });
    // The operator states a feeder for FM-CAM-01 (operator API): the page shows it and what hangs from it.
    const site = page.url().match(/\/console\/sites\/(\d+)$/)![1];
    const auth = { Authorization: "Bearer demo-operator-api-token" };
    const got = await page.request.get(`/api/v1/sites/${site}/electrics`, { headers: auth });
    expect(got.status()).toBe(200);
    const original = await got.json();
    const onBay = original.connectors
      .filter((c: any) => c.charger_id === "FM-CAM-01")
      .map((c: any) => ({ ...c, circuit: "Bay A" }));
    expect(onBay.length).toBe(2);
    // And a 6 A default, so a charger that loses us can still start a car where there is room,
    // raised as soon as there is (not after the usual two minutes of room).
    const put = await page.request.put(`/api/v1/sites/${site}/electrics`, {
      headers: auth,
      data: { ...original, connector_fallback_a: 6, idle_default_raise_after_s: 0, circuits: [{ name: "Bay A", limit_a: [63, 63, 63] }], connectors: onBay },
    });
    expect(put.status()).toBe(200);
    try {
      await expect(page.getByTestId("FM-CAM-01-1-circuit")).toHaveText("Bay A", { timeout: 10_000 });
      await expect(page.getByTestId("circuit-Bay A-L1-limit")).toHaveText("63.0 A");
      await expect(page.getByTestId("FM-CAM-02-1-circuit")).toHaveText("–");
      // FM-CAM-02 (online, no car) is sent its connectors' own 6 A defaults where the cars leave
      // room: the first always fits beside the bay's 63 A and the worst-case store.
      await expect(page.getByTestId("FM-CAM-02-1-car")).toHaveText("none (a car starts at 6.0 A)", { timeout: 10_000 });
    } finally {
      const back = await page.request.put(`/api/v1/sites/${site}/electrics`, { headers: auth, data: original });
      expect(back.status()).toBe(200);
    }
    // All of it without a reload.
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
  } finally {
    sim.kill();
    idle?.kill();
  }
});

test("a retailer cannot see the network's site loads", async ({ page }) => {
  await signIn(page, "manager@urbanpod.example", "demo-urbanpod-pass");
  await expect(page).toHaveURL(/\/dashboard$/);
  const response = await page.goto("/console/sites/1");
  expect(response?.status()).toBe(403);
  await expect(page.getByTestId("sign-in-prompt")).toContainText("you do not have access");
});

test("an operator is told when the store meter repeats itself, and its worst case is counted until it moves", async ({ page }) => {
  await signIn(page, "operator@forecourt.local", "demo-operator-pass");
  await expect(page).toHaveURL(/\/console$/);
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  await page.getByRole("link", { name: "FreshMart Camden" }).first().click();
  await expect(page).toHaveURL(/\/console\/sites\/\d+$/);
  const site = page.url().match(/\/console\/sites\/(\d+)$/)![1];
  const auth = { Authorization: "Bearer demo-operator-api-token" };
  const original = await (await page.request.get(`/api/v1/sites/${site}/electrics`, { headers: auth })).json();
  expect(original.store_meter_frozen_after_s).toBe(900);
  // One second here, rather than a quarter of an hour.
  const put = await page.request.put(`/api/v1/sites/${site}/electrics`, {
    headers: auth,
    data: { ...original, store_meter_frozen_after_s: 1 },
  });
  expect(put.status()).toBe(200);
  const meter = async (l1: number) => {
    const posted = await page.request.post(`/api/v1/sites/${site}/meter`, { headers: auth, data: { l1_a: l1, l2_a: 4, l3_a: 3 } });
    expect(posted.status()).toBe(200);
  };
  try {
    await meter(5);
    // Believed: the reading plus the rise it may make unseen, under the 30 A worst case.
    await expect(page.getByTestId("store-note")).toContainText("latest reading", { timeout: 10_000 });
    expect(await ampsOf(page, "grid-L1-store")).toBeLessThan(30);
    // The gateway loses its meter and posts the same value again a second later.
    await page.waitForTimeout(1_200);
    await meter(5);
    await expect(page.getByTestId("store-note")).toContainText("very same reading", { timeout: 10_000 });
    await expect(page.getByTestId("store-note")).toContainText(/Set aside for \d+ s\./);
    await expect(page.getByTestId("grid-L1-store")).toHaveText("30.0 A");
    // The network's overview points at the site too.
    await page.getByRole("link", { name: "All chargers" }).click();
    await expect(page).toHaveURL(/\/console$/);
    await expect(page.getByTestId(`site-alert-${site}`)).toContainText("repeats the very same reading", { timeout: 10_000 });
    // The meter is back: a tenth of an amp more is a live store.
    await meter(5.1);
    await expect(page.getByTestId("site-alerts")).toHaveCount(0, { timeout: 15_000 });
    await page.getByRole("link", { name: "FreshMart Camden" }).first().click();
    await expect(page.getByTestId("store-note")).toContainText("latest reading", { timeout: 10_000 });
    expect(await ampsOf(page, "grid-L1-store")).toBeLessThan(30);
  } finally {
    const back = await page.request.put(`/api/v1/sites/${site}/electrics`, { headers: auth, data: original });
    expect(back.status()).toBe(200);
  }
});

test("an operator has a store meter's older readings forgotten when the store truly draws less now", async ({ page }) => {
  await signIn(page, "operator@forecourt.local", "demo-operator-pass");
  await expect(page).toHaveURL(/\/console$/);
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  await page.getByRole("link", { name: "FreshMart Camden" }).first().click();
  await expect(page).toHaveURL(/\/console\/sites\/\d+$/);
  const site = page.url().match(/\/console\/sites\/(\d+)$/)![1];
  const auth = { Authorization: "Bearer demo-operator-api-token" };
  const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
  const clearHistory = async () => {
    const from = encodeURIComponent(ago(3 * 24 * 60));
    const to = encodeURIComponent(ago(-1));
    const cleared = await page.request.delete(`/api/v1/sites/${site}/meter/readings?from=${from}&to=${to}`, { headers: auth });
    expect(cleared.status()).toBe(200);
  };
  // Earlier tests' readings (a few amps, moments ago) would be the latest, far below the export.
  await clearHistory();
  try {
    // The meter's export: a day and two hours, a reading a minute, the store at 40 to 46 A on L1.
    const readings = Array.from({ length: 1560 }, (_, i) => 1560 - i).map((k) => ({
      at: ago(k), l1_a: 40 + (k % 7), l2_a: 35, l3_a: 30,
    }));
    const imported = await page.request.post(`/api/v1/sites/${site}/meter/readings`, { headers: auth, data: { readings } });
    expect(imported.status()).toBe(200);
    expect((await imported.json()).kept).toBe(1560);
    await expect(page.getByTestId("store-note")).toContainText("the rise its meter has shown", { timeout: 10_000 });
    // The bakery's ovens are gone: the store draws under half of anything its meter read before.
    const low = await page.request.post(`/api/v1/sites/${site}/meter`, { headers: auth, data: { l1_a: 15, l2_a: 12, l3_a: 10 } });
    expect(low.status()).toBe(200);
    await expect(page.getByTestId("store-note")).toContainText("far below anything it read", { timeout: 10_000 });
    await expect(page.getByTestId("grid-L1-store")).toHaveText("30.0 A");
    await page.getByTestId("forget-before-drop").click();
    await expect(page.getByTestId("forget-result")).toContainText("1560 readings from before the drop forgotten");
    // Believed again, on the configured rise until a day of the new store is known.
    await expect(page.getByTestId("store-note")).toContainText("configured rise", { timeout: 10_000 });
    await expect(page.getByTestId("forget-before-drop")).toHaveCount(0);
    expect(await ampsOf(page, "grid-L1-store")).toBeLessThan(30);
  } finally {
    // Whatever happened, no history of this test's is left to the others.
    await clearHistory();
  }
});
