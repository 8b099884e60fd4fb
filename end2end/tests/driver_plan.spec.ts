import { test, expect, APIRequestContext } from "@playwright/test";
import { spawn } from "node:child_process";
import path from "node:path";
import { hydrated, signIn } from "./helpers";

const bin = process.env.FORECOURT_BIN ?? path.resolve(__dirname, "../../target/debug/forecourt");

/** The presence code printed beside a connector's QR code (the operator API knows it). */
async function stickerCode(request: APIRequestContext, charger: string, connector: number): Promise<string> {
  const res = await request.get(`/api/v1/chargers/${charger}`, { headers: { Authorization: "Bearer demo-operator-api-token" } });
  expect(res.status()).toBe(200);
  const detail = await res.json();
  return detail.connectors.find((c: any) => c.connector_no === connector).presence_code;
}

test("a driver plans a charge on the phone; it waits for the car, joins its session, and the operator sees it", async ({
  page,
  browser,
  baseURL,
  request,
}) => {
  test.setTimeout(60_000);
  const code = await stickerCode(request, "UP-ZUI-02", 1);
  expect(code).toMatch(/^[A-Z0-9]{8}$/);

  // Someone who only knows the charger's id (no sticker code) cannot plan its charge.
  const remote = await browser.newContext();
  const remotePage = await remote.newPage();
  await remotePage.goto("/c/UP-ZUI-02/1");
  await hydrated(remotePage);
  await remotePage.getByTestId("plan-energy").fill("20");
  await remotePage.getByTestId("plan-save").click();
  await expect(remotePage.getByTestId("plan-error")).toContainText("scan the QR code on the charger");
  await remote.close();

  // UrbanPod Zuidas is in Amsterdam: the time the driver types is the site's. The driver scanned
  // the sticker: its QR code opens the page with the presence code.
  await page.goto(`/c/UP-ZUI-02/1?p=${code}`);
  await hydrated(page);
  const plan = page.getByTestId("plan");
  await expect(plan).toContainText("Plan your charge");
  await expect(page.getByTestId("plan-summary")).toHaveCount(0);

  // Bad input: a reason, nothing kept.
  await page.getByTestId("plan-energy").fill("lots");
  await page.getByTestId("plan-save").click();
  await expect(page.getByTestId("plan-error")).toContainText("is not an amount of energy");
  await expect(page.getByTestId("plan-summary")).toHaveCount(0);

  // Before the car: saved, and it waits for the car to start here.
  await page.getByTestId("plan-leave-at").fill("18:30");
  await page.getByTestId("plan-energy").fill("20");
  await page.getByTestId("plan-save").click();
  await expect(page.getByTestId("plan-summary")).toHaveText(
    /^Saved: 20 kWh by 18:30( tomorrow)?\. Start charging here by \d\d:\d\d and we will plan your charge by it\.$/,
  );
  await expect(page.getByTestId("plan-error")).toHaveCount(0);

  // The phone keeps it: after a reload the plan and the form come back.
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId("plan-summary")).toContainText("Saved: 20 kWh by 18:30");
  await expect(page.getByTestId("plan-leave-at")).toHaveValue("18:30");
  await expect(page.getByTestId("plan-energy")).toHaveValue("20");

  // Another phone sees no plan.
  const stranger = await browser.newContext();
  const strangerPage = await stranger.newPage();
  await strangerPage.goto(`/c/UP-ZUI-02/1?p=${code}`);
  await expect(strangerPage.getByTestId("plan")).toContainText("Plan your charge");
  await expect(strangerPage.getByTestId("plan-summary")).toHaveCount(0);

  // The car starts (the charger over real OCPP, our simulator): the plan joins its session.
  const ws = baseURL!.replace("http", "ws") + "/ocpp";
  const sim = spawn(bin, ["simulate", "--url", ws, "--charger", "UP-ZUI-02:1", "--mean-idle", "1", "--mean-session", "600", "--duration", "40"], {
    stdio: "ignore",
  });
  try {
    // The page follows it without a reload.
    await page.evaluate(() => ((window as any).__sameDocument = true));
    await expect(page.getByTestId("plan-summary")).toHaveText(/^Your charge is planned: 20 kWh by 18:30( tomorrow)?\.$/, {
      timeout: 30_000,
    });
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);

    // Now that it runs, the stranger's phone cannot change it.
    await hydrated(strangerPage);
    await strangerPage.getByTestId("plan-energy").fill("80");
    await strangerPage.getByTestId("plan-save").click();
    await expect(strangerPage.getByTestId("plan-error")).toContainText("planned on another phone");

    // The operator's console shows what the balancer was told.
    const operator = await browser.newContext();
    const console = await operator.newPage();
    await signIn(console, "operator@forecourt.local", "demo-operator-pass");
    await expect(console).toHaveURL(/\/console$/);
    await console.getByRole("link", { name: "UrbanPod Zuidas" }).first().click();
    await expect(console.getByTestId("UP-ZUI-02-1-car-details")).toContainText(/\d+\.\d kWh to go · leaves in \d+ min/, {
      timeout: 15_000,
    });
    await operator.close();
  } finally {
    sim.kill();
    await stranger.close();
  }
});
