// End-to-end tests of the needtag web console in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium; no browser download). Run through tests/browser/run.sh, which starts the
// service and sets the environment:
//   NEEDTAG_URL          base URL of a running `needtag serve` with API keys configured
//   NEEDTAG_TAG_KEY      a key with the `tag` scope only
//   NEEDTAG_ADMIN_KEY    a key with the `tag` and `admin` scopes
//   NEEDTAG_REVIEW_KEY   a key with the `review` scope (the memo archive and the manager's numbers)
//   NEEDTAG_FIXTURES     the repository's fixtures/audio directory
//   NEEDTAG_SCREENSHOTS  where screenshots go (test-output/console at the repository root)
//   NEEDTAG_LIBRARY_DIR  optional: the (scratch copy of the) library the server loaded, for the reload test
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = (process.env.NEEDTAG_URL || 'http://127.0.0.1:8090').replace(/\/$/, '');
const TAG_KEY = process.env.NEEDTAG_TAG_KEY || '';
const ADMIN_KEY = process.env.NEEDTAG_ADMIN_KEY || '';
const REVIEW_KEY = process.env.NEEDTAG_REVIEW_KEY || '';
const FIXTURES = process.env.NEEDTAG_FIXTURES || path.resolve(import.meta.dirname, '../../fixtures/audio');
const SHOTS = process.env.NEEDTAG_SCREENSHOTS || path.resolve(import.meta.dirname, '../../test-output/console');
const LIBRARY_DIR = process.env.NEEDTAG_LIBRARY_DIR || '';
const CHROMIUM = process.env.NEEDTAG_CHROMIUM || '/usr/bin/chromium';
const BASE_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const MEDIA_ARGS = ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'];
const MEMO = '张主任提到关节镜手术后患者投诉疼痛管理不到位，希望我们下周三带镇痛方案对比表过来，另外库存还够，暂时不用补货';
const SLOW = 90_000; // transcription and evaluation take seconds; generous on a loaded 2-core CI box

fs.mkdirSync(SHOTS, { recursive: true });

/** Each browser gets its own fresh temporary profile directory, removed afterwards. */
async function launch(extraArgs = []) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'needtag-console-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...BASE_ARGS, ...extraArgs],
      viewport: { width: 1280, height: 900 },
      locale: 'zh-CN',
      timezoneId: 'Asia/Shanghai',
    });
  } catch (e) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw e;
  }
  context.setDefaultTimeout(45_000); // a loaded 2-core CI machine is slow; waits end as soon as the element is there
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  if (browser) await browser.close();
});

/** A new page with the console loaded; collects uncaught page errors, which fail the test. */
async function openConsole(ctx, { key, hash = 'try', viewport } = {}) {
  const page = await ctx.newPage();
  if (viewport) await page.setViewportSize(viewport);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.pageErrors = pageErrors;
  // sessionStorage is per tab: a new tab starts without a key
  await page.goto(`${BASE}/#${hash}`);
  await page.locator('#server-status.pill-ok').waitFor({ timeout: 15_000 });
  if (key !== undefined) await enterKey(page, key);
  return page;
}
async function enterKey(page, key) {
  if (await page.locator('#settings').isHidden()) await page.click('#settings-toggle');
  await page.fill('#api-key', key);
  await page.click('#key-save');
  await page.locator('#key-state', { hasText: key.slice(-4) }).waitFor();
}
async function shot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0)); // sticky tabs belong at the top of a full-page shot
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}
function noPageErrors(page) {
  assert.deepEqual(page.pageErrors, [], 'uncaught errors in the page');
}
async function tagMemo(page, text, recordedAt) {
  await page.click('#input-text-tab');
  await page.fill('#memo-text', text);
  if (recordedAt) {
    if (!(await page.locator('details.meta-fields').evaluate((d) => d.open))) await page.click('details.meta-fields > summary');
    await page.fill('#recorded-at', recordedAt);
  }
  await page.click('#tag-btn');
}
/** The error box must be readable: a status meaning, the server's message, never raw JSON. */
async function readableError(page, sel = '#try-error') {
  const box = page.locator(sel);
  await box.waitFor({ state: 'visible', timeout: SLOW });
  const text = await box.innerText();
  assert.doesNotMatch(text, /\{\s*"error"/, 'raw JSON shown to the user');
  assert.match(text, /HTTP \d{3}/);
  return text;
}

test('text memo: needs with highlighted evidence, pack, next step, contact, ruled-out need', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY });
  await tagMemo(page, MEMO, '2026-03-04T17:20');
  await page.locator('#result').waitFor({ state: 'visible' });

  const need = page.locator('#needs-list article.need[data-id="pain_management"]');
  await need.waitFor();
  assert.match(await need.innerText(), /疼痛/);

  // evidence highlighted in place, in the memo text
  const marks = page.locator('#memo-view mark[data-needs~="pain_management"]');
  assert.ok(await marks.count() >= 1, 'no highlight for pain_management');
  const marked = await marks.allInnerTexts();
  assert.ok(marked.some((t) => t.includes('疼痛管理') || t.includes('镇痛方案')), `highlights: ${marked}`);
  // the whole text is still there, in order
  assert.equal(await page.locator('#memo-view').innerText(), MEMO);
  // the legend names the need
  assert.ok(await page.locator('#legend [data-need="pain_management"]').isVisible());

  // hovering a highlight tells need, kind and confidence
  await marks.first().hover();
  const tip = page.locator('#tip');
  await tip.waitFor({ state: 'visible' });
  const tipText = await tip.innerText();
  assert.match(tipText, /需求：/);
  assert.match(tipText, /关键词|同义词|语义|检索|同音|句式/);
  assert.match(tipText, /置信度 \d+%/);

  // solution pack link
  const pack = need.locator('a.pack-link', { hasText: '镇痛方案对比表' });
  assert.equal(await pack.count(), 1);
  assert.match(await pack.getAttribute('href'), /^https?:\/\//);

  // next step dated 2026-03-11 (下周三 from Wednesday 2026-03-04)
  const step = page.locator('#steps-list .step-due[data-from="2026-03-11"]');
  await step.waitFor();
  assert.match(await step.innerText(), /2026-03-11/);

  // contact
  const contact = page.locator('#contacts-list .contact', { hasText: '张主任' });
  assert.equal(await contact.count(), 1);
  assert.match(await contact.innerText(), /决策人|采购|使用者|财务|影响者/);

  // stock_shortage is ruled out, not a need
  const ruled = page.locator('#ruled-list article.ruled[data-id="stock_shortage"]');
  await ruled.waitFor();
  assert.match(await ruled.innerText(), /否定词/);
  assert.equal(await page.locator('#needs-list article[data-id="stock_shortage"]').count(), 0);

  // vague flag and timings are shown
  assert.match(await page.locator('#vague').innerText(), /内容具体/);
  assert.match(await page.locator('#timings').innerText(), /合计/);

  await page.mouse.move(0, 0);
  await shot(page, '01-text-memo');
  noPageErrors(page);
  await page.close();
});

test('verifier: why each tag was kept, the candidates it dropped, counter-examples in the library', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY });
  await page.click('#input-text-tab');
  await page.check('#explain');
  // An open need next to a finished deal and a satisfied topic.
  await tagMemo(page, '标已经中了，下周签合同。张主任说关节镜术后病人晚上疼得睡不着，希望我们下周带镇痛方案过来');
  const need = page.locator('#needs-list article.need[data-id="pain_management"]');
  await need.waitFor();
  const why = need.locator('.why');
  await why.waitFor();
  assert.match(await why.innerText(), /判定 \d+% = 话题 \d+% × 表达为需求 \d+%/);
  assert.ok(await why.locator('.chip.reason').count() >= 1, 'no reasons shown');
  assert.equal(await page.locator('#needs-list article[data-id="tender_support"]').count(), 0);
  const dropped = page.locator('#dropped-box');
  await dropped.waitFor({ state: 'visible' });
  const items = dropped.locator('article.dropped');
  assert.ok(await items.count() >= 1, 'no dropped candidate listed');
  assert.match(await items.first().innerText(), /读到的句子/);
  await shot(page, '01b-verifier-why-and-dropped');
  // Unchecked: the list is gone on the next result.
  await page.uncheck('#explain');
  await page.click('#tag-btn');
  await page.waitForFunction(() => document.querySelector('#dropped-box').hidden);

  await page.goto(`${BASE}/#library`);
  await page.locator('#lib-version').waitFor();
  assert.match(await page.locator('#lib-verifier').innerText(), /判定模型：在 \d+ 条标注备忘录上训练/);
  await page.fill('#lib-search', '银行');
  const comp = page.locator('#lib-needs details.lib-item[data-id="competitor_threat"]');
  await page.waitForFunction(() => {
    const d = document.querySelector('#lib-needs details.lib-item[data-id="competitor_threat"]');
    return d && d.open;
  });
  assert.match(await comp.innerText(), /反例/);
  assert.match(await comp.innerText(), /对面新开了一家银行/);
  await shot(page, '07c-library-counter-examples');
  noPageErrors(page);
  await page.close();
});

test('audio upload: transcript and vague flag', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY });
  await page.click('#input-upload-tab');
  await page.click('details.meta-fields > summary');
  await page.selectOption('#domain', 'pharmacy');
  const response = page.waitForResponse((r) => r.url().endsWith('/v1/memos'), { timeout: SLOW });
  response.catch(() => {});
  await page.setInputFiles('#audio-file', path.join(FIXTURES, 'thchs30_test.wav'));
  assert.equal((await response).status(), 200);
  assert.equal((await (await response).json()).domain, 'pharmacy');
  await page.locator('#result').waitFor({ state: 'visible' });
  const transcript = await page.locator('#memo-view').innerText();
  assert.match(transcript, /压岁|女儿/);
  assert.match(await page.locator('#result').innerText(), /行业 连锁药店/);
  const vague = page.locator('#vague.vague-on');
  await vague.waitFor();
  assert.match(await vague.innerText(), /空泛/);
  assert.ok((await page.locator('#vague .vague-reason').innerText()).length > 0, 'vague reason missing');
  assert.match(await page.locator('#timings').innerText(), /转写/);
  await shot(page, '02-audio-upload');
  noPageErrors(page);
  await page.close();
});

test('browser recording (fake microphone): WebM upload accepted', { timeout: SLOW }, async () => {
  const rec = await launch(MEDIA_ARGS);
  try {
    const page = await openConsole(rec.context, { key: TAG_KEY });
    await page.click('#input-record-tab');
    await page.click('#rec-start');
    await page.locator('#rec-stop:enabled').waitFor();
    // record two seconds: wait on the recorder's own clock, not a fixed sleep
    await page.waitForFunction(() => Number(document.querySelector('#rec-time').dataset.seconds) >= 2.0, null, { timeout: 20_000 });
    const request = page.waitForRequest((r) => r.url().endsWith('/v1/memos') && r.method() === 'POST');
    const response = page.waitForResponse((r) => r.url().endsWith('/v1/memos'), { timeout: SLOW });
    request.catch(() => {}); response.catch(() => {}); // no unhandled rejection if an assertion fails first
    await page.click('#rec-stop');
    const req = await request;
    assert.match(req.headers()['content-type'] || '', /^multipart\/form-data/);
    const res = await response;
    // the point: the browser's WebM/Opus is accepted (the fake device is a beep, so no speech is fine)
    assert.equal(res.status(), 200, `server refused the recording: ${await res.text()}`);
    const json = await res.json();
    assert.equal(json.audio.container, 'webm');
    assert.equal(json.audio.codec, 'opus');
    await page.locator('#result').waitFor({ state: 'visible' });
    assert.match(await page.locator('#summary').innerText(), /webm/);
    assert.match(await page.locator('#summary').innerText(), /检测到语音|未检测到语音/);
    assert.ok(await page.locator('#rec-audio').isVisible(), 'playback of the recording missing');
    await shot(page, '03-recording');
    noPageErrors(page);
    await page.close();
  } finally {
    await rec.close();
  }
});

test('evaluation: bundled set, per-need table sortable, SVG chart, misses', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY, hash: 'eval' });
  await page.click('#tab-eval');
  await page.click('#eval-run');
  await page.locator('#eval-report').waitFor({ state: 'visible', timeout: SLOW });
  const rows = page.locator('#eval-needs-table tbody tr');
  assert.ok(await rows.count() >= 28, `only ${await rows.count()} rows`);
  // the chart: one bar per need, drawn as inline SVG
  const bars = page.locator('#eval-chart svg rect.bar-rect');
  assert.ok(await bars.count() >= 28, 'chart has too few bars');
  const box = await page.locator('#eval-chart svg').boundingBox();
  assert.ok(box && box.width > 100 && box.height > 100, 'chart not rendered');
  // headline numbers
  const summary = await page.locator('#eval-summary').innerText();
  assert.match(summary, /micro-F1/);
  assert.match(summary, /macro-F1/);
  assert.match(summary, /空泛标记/);

  // sort by F1: first click descending, second ascending
  const f1Values = () => page.locator('#eval-needs-table tbody td[data-key="f1"]').evaluateAll((tds) => tds.map((td) => Number(td.dataset.value)));
  const th = page.locator('#eval-needs-table th[data-key="f1"]');
  await th.locator('button').click();
  assert.equal(await th.getAttribute('aria-sort'), 'descending');
  let v = await f1Values();
  assert.deepEqual(v, [...v].sort((a, b) => b - a));
  await page.locator('#eval-needs-table th[data-key="f1"] button').click();
  assert.equal(await page.locator('#eval-needs-table th[data-key="f1"]').getAttribute('aria-sort'), 'ascending');
  v = await f1Values();
  assert.deepEqual(v, [...v].sort((a, b) => a - b));
  // sort by support too
  await page.locator('#eval-needs-table th[data-key="support"] button').click();
  const sup = await page.locator('#eval-needs-table tbody td[data-key="support"]').evaluateAll((tds) => tds.map((td) => Number(td.dataset.value)));
  assert.deepEqual(sup, [...sup].sort((a, b) => b - a));

  // misses with their text and what was missed / extra
  const misses = page.locator('#eval-misses article.miss');
  assert.ok(await misses.count() > 0, 'no misses listed');
  assert.match(await page.locator('#eval-misses').innerText(), /漏标|多标/);
  // clicking a row filters the misses to that label
  const total = await misses.count();
  const worst = page.locator('#eval-needs-table tbody tr').first();
  await worst.click();
  const label = await worst.getAttribute('data-label');
  assert.equal(await page.locator('#miss-filter').inputValue(), label);
  assert.ok(await misses.count() <= total);
  await page.selectOption('#miss-filter', '');
  await page.locator('#eval-needs-table th[data-key="f1"] button').click();
  await shot(page, '04-evaluation');
  noPageErrors(page);
  await page.close();
});

test('evaluation: uploaded JSONL in keyword mode, and a malformed file', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY, hash: 'eval' });
  const dev = fs.readFileSync(path.resolve(import.meta.dirname, '../../need-library/eval/dev.jsonl'), 'utf8').split('\n').filter((l) => l.trim());
  await page.check('input[name=eval-src][value=file]');
  await page.check('input[name=eval-mode][value=keyword]');
  await page.setInputFiles('#eval-file', { name: 'sample.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(`${dev.slice(0, 12).join('\n')}\n`) });
  await page.locator('#eval-file-info', { hasText: '12 行' }).waitFor();
  await page.click('#eval-run');
  await page.locator('#eval-meta', { hasText: '12 条备忘录' }).waitFor({ timeout: SLOW });
  assert.match(await page.locator('#eval-meta').innerText(), /仅关键词/);
  assert.ok(await page.locator('#eval-needs-table tbody tr').count() >= 1);
  assert.ok(await page.locator('#eval-chart svg rect.bar-rect').count() >= 1);

  // a line without `text`: the server's explanation, readably
  await page.setInputFiles('#eval-file', { name: 'broken.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from('{"id": "x-1", "needs": []}\n') });
  await page.click('#eval-run');
  const text = await readableError(page, '#eval-error');
  assert.match(text, /HTTP 422/);
  assert.match(text, /missing field `text`/);
  await page.locator('#eval-error').screenshot({ path: path.join(SHOTS, '04b-evaluation-bad-jsonl.png') });
  noPageErrors(page);
  await page.close();
});

test('bad uploads show the server explanation readably', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY });
  await page.click('#input-upload-tab');

  await page.setInputFiles('#audio-file', path.join(FIXTURES, 's0764_truncated.m4a'));
  let text = await readableError(page);
  assert.match(text, /HTTP 422/);
  assert.match(text, /音频文件损坏或不完整/);
  assert.match(text, /truncated/); // the server's own explanation
  await shot(page, '05a-bad-upload-truncated');

  // a text file renamed .wav
  await page.setInputFiles('#audio-file', {
    name: 'meeting-notes.wav',
    mimeType: 'audio/wav',
    buffer: Buffer.from('这不是录音，只是一份会议纪要的文字。\nnot audio at all\n'.repeat(20), 'utf8'),
  });
  await page.locator('#try-error', { hasText: 'HTTP 415' }).waitFor({ timeout: SLOW });
  text = await readableError(page);
  assert.match(text, /不支持的格式/);
  assert.match(text, /not audio|unsupported audio format/);
  assert.match(text, /WAV、MP3/); // what to do instead
  assert.ok(await page.locator('#result').isHidden(), 'a result shown for a failed upload');
  await shot(page, '05b-bad-upload-text-as-wav');
  noPageErrors(page);
  await page.close();
});

test('missing API key: clear message to enter the key, then it works', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, {}); // no key
  assert.match(await page.locator('#key-state').innerText(), /密钥：未设置/);
  await tagMemo(page, MEMO);
  const text = await readableError(page);
  assert.match(text, /HTTP 401/);
  assert.match(text, /API 密钥/);
  assert.match(text, /输入 API 密钥/);
  const banner = page.locator('#auth-banner');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.innerText(), /请先点击右上角的「密钥」按钮输入 API 密钥/);
  await shot(page, '06-missing-key');

  // the banner's button opens the settings; with the key the same request succeeds
  await banner.locator('button', { hasText: '输入 API 密钥' }).click();
  assert.ok(await page.locator('#settings').isVisible());
  assert.ok(await page.locator('#api-key').evaluate((e) => e === document.activeElement));
  await enterKey(page, TAG_KEY);
  assert.ok(await banner.isHidden(), 'banner should go once a key is saved');
  await page.click('#tag-btn');
  await page.locator('#needs-list article.need[data-id="pain_management"]').waitFor();
  assert.ok(await page.locator('#try-error').isHidden());
  // the key is kept in sessionStorage and survives a reload of the tab
  await page.reload();
  await page.locator('#key-state', { hasText: TAG_KEY.slice(-4) }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('needtag.apiKey')), TAG_KEY);
  noPageErrors(page);
  await page.close();
});

test('library: search, details, reload forbidden with a tag key, new version with an admin key', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY, hash: 'library' });
  await page.locator('#lib-version').waitFor();
  const info = await page.locator('#lib-info').innerText();
  assert.match(info, /需求/);
  assert.ok(await page.locator('#lib-needs details.lib-item').count() >= 28);

  await page.fill('#lib-search', '镇痛');
  const need = page.locator('#lib-needs details.lib-item[data-id="pain_management"]');
  await need.waitFor();
  await page.waitForFunction(() => document.querySelectorAll('#lib-needs details.lib-item').length < 28);
  assert.ok(await need.evaluate((d) => d.open), 'matching need should be expanded');
  const needText = await need.innerText();
  assert.match(needText, /关键词/);
  assert.match(needText, /同义词/);
  assert.match(needText, /例句/);
  assert.match(needText, /解决方案包/);
  assert.ok(await need.locator('a.pack-link', { hasText: '镇痛方案对比表' }).count() === 1);
  assert.ok(await page.locator('#lib-packs [data-id="analgesia_comparison"]').count() === 1);
  await shot(page, '07a-library-search');

  await page.fill('#lib-search', '');
  await page.waitForFunction(() => document.querySelectorAll('#lib-needs details.lib-item').length >= 28);
  const action = page.locator('#lib-actions details.lib-item[data-id="decision_maker_meeting"]');
  await action.locator('summary').click();
  const actionText = await action.innerText();
  assert.match(actionText, /高价值/);
  assert.match(actionText, /句式/);

  // reload with a tag-only key: forbidden, said plainly
  await page.click('#reload-btn');
  const text = await readableError(page, '#lib-error');
  assert.match(text, /HTTP 403/);
  assert.match(text, /权限/);

  // with the admin key: the new version
  await enterKey(page, ADMIN_KEY);
  await page.click('#reload-btn');
  await page.locator('#reload-ok').waitFor({ timeout: SLOW });
  assert.match(await page.locator('#reload-ok .new-version').innerText(), /\S/);
  assert.ok(await page.locator('#lib-error').isHidden());

  noPageErrors(page);
  await page.close();
});

test('library reload: an invalid library is refused with its problems by file and line', {
  timeout: SLOW,
  skip: LIBRARY_DIR ? false : 'the server runs the compiled-in library (NEEDTAG_LIBRARY_DIR unset): no file to break',
}, async () => {
  const page = await openConsole(browser.context, { key: ADMIN_KEY, hash: 'library' });
  await page.locator('#lib-version').waitFor();
  const before = await page.locator('#lib-version').innerText();
  // break the library on disk: the problems are listed with file and line, the old library keeps serving
  const file = path.join(LIBRARY_DIR, 'actions.toml');
  const original = fs.readFileSync(file);
  try {
    fs.appendFileSync(file, '\nbroken = [\n');
    await page.click('#reload-btn');
    const box = page.locator('#lib-error');
    await box.locator('ol.problems li').first().waitFor({ timeout: SLOW });
    const text = await box.innerText();
    assert.match(text, /HTTP 422/);
    assert.match(text, /继续提供服务/);
    assert.match(await box.locator('ol.problems li .prob-loc').first().innerText(), /^actions\.toml:\d+$/);
    assert.equal(await page.locator('#lib-version').innerText(), before);
    await page.locator('#view-library > .card').first().screenshot({ path: path.join(SHOTS, '07b-library-reload-problems.png') });
  } finally {
    fs.writeFileSync(file, original);
  }
  // mended: the reload goes through
  await page.click('#reload-btn');
  await page.locator('#reload-ok').waitFor({ timeout: SLOW });
  assert.ok(await page.locator('#lib-error').isHidden());
  noPageErrors(page);
  await page.close();
});

test('phone width 375 px: no horizontal overflow in any view', { timeout: SLOW * 2 }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY, viewport: { width: 375, height: 800 } });
  const overflow = () => page.evaluate(() => document.scrollingElement.scrollWidth);
  assert.ok(await overflow() <= 376, `empty try view overflows: ${await overflow()}`);

  await tagMemo(page, MEMO, '2026-03-04T17:20');
  await page.locator('#needs-list article.need[data-id="pain_management"]').waitFor();
  await page.locator('#memo-view mark').first().click(); // tap shows the tooltip inside the screen
  await page.locator('#tip').waitFor({ state: 'visible' });
  const tip = await page.locator('#tip').boundingBox();
  assert.ok(tip.x >= 0 && tip.x + tip.width <= 375, 'tooltip off screen');
  assert.ok(await overflow() <= 376, `try view with a result overflows: ${await overflow()}`);
  await page.locator('#settings-toggle').click(); // close any open tooltip, show settings
  assert.ok(await overflow() <= 376, `settings overflow: ${await overflow()}`);
  await page.locator('#settings-toggle').click();
  await shot(page, '08a-phone-try');

  await page.click('#tab-library');
  await page.locator('#lib-version').waitFor();
  await page.locator('#lib-needs details.lib-item').first().locator('summary').click();
  assert.ok(await overflow() <= 376, `library view overflows: ${await overflow()}`);
  await shot(page, '08b-phone-library');

  await page.click('#tab-eval');
  await page.click('#eval-run');
  await page.locator('#eval-report').waitFor({ state: 'visible', timeout: SLOW });
  const chart = await page.locator('#eval-chart svg').boundingBox();
  assert.ok(chart.width <= 375, 'chart wider than the screen');
  assert.ok(await overflow() <= 376, `evaluation view overflows: ${await overflow()}`);
  await shot(page, '08c-phone-eval');
  noPageErrors(page);
  await page.close();
});

/** Store a memo through the API (as the CRM would), with its metadata. */
async function storeMemo(body) {
  const res = await fetch(`${BASE}/v1/tag`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TAG_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(Object.assign({ mode: 'keyword' }, body)),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

test('memo history: filter, open a memo, review its tags in place, blind spots', { timeout: SLOW }, async () => {
  const stored = await storeMemo({ text: MEMO, rep_id: 'browser-rep', customer_id: 'browser-c1', team: 'browser-team', recorded_at: '2026-02-02T10:00:00+08:00' });
  await storeMemo({ text: '已沟通，持续跟进', rep_id: 'browser-rep', customer_id: 'browser-c2', team: 'browser-team', recorded_at: '2026-02-03T10:00:00+08:00' });
  await storeMemo({ text: '客户想安排质检团队下周来工厂参观产线', rep_id: 'browser-rep', team: 'browser-team', recorded_at: '2026-02-04T10:00:00+08:00' });
  const page = await openConsole(browser.context, { key: REVIEW_KEY, hash: 'history' });
  await page.fill('#hist-rep', 'browser-rep');
  await page.click('#hist-search');
  const row = page.locator(`#hist-table tr.hist-row[data-id="${stored.memo_id}"]`);
  await row.waitFor();
  assert.equal(await page.locator('#hist-table tr.hist-row').count(), 3);
  await row.click();
  const detail = page.locator(`#memo-detail[data-id="${stored.memo_id}"]`);
  await detail.waitFor();
  assert.match(await detail.innerText(), /关节镜/);
  // Reject the pain-management need, add a missed one: the marks are saved and shown in place.
  const need = page.locator('.review-needs li[data-id="pain_management"]');
  await need.locator('button.reject').click();
  await page.locator('.review-needs li.rejected[data-id="pain_management"]').waitFor();
  await page.selectOption('#memo-detail select.add-need', 'equipment_maintenance');
  await page.click('#memo-detail .add-need-btn');
  await page.locator('.review-needs li.confirmed[data-id="equipment_maintenance"]').waitFor();
  const res = await fetch(`${BASE}/v1/memos/${stored.memo_id}`, { headers: { Authorization: `Bearer ${REVIEW_KEY}` } });
  const memo = await res.json();
  assert.equal(memo.reviewed, true);
  assert.ok(memo.labels.needs.includes('equipment_maintenance') && !memo.labels.needs.includes('pain_management'), JSON.stringify(memo.labels));
  // The row says it is reviewed now.
  await page.locator(`#hist-table tr.hist-row[data-id="${stored.memo_id}"] .chip-reviewed`).waitFor();
  // Search by text.
  await page.fill('#hist-rep', '');
  await page.fill('#hist-q', '持续跟进');
  await page.click('#hist-search');
  await page.locator('#hist-table tr.hist-row .chip-warn').first().waitFor();
  // Blind spots.
  await page.click('#blind-run');
  await page.locator('#blind-status', { hasText: '读了' }).waitFor();
  // Re-tag with the library on disk: nothing changes the stored memos, the scores are shown.
  await page.click('#retag-run');
  await page.locator('#retag-result table.retag-scores').waitFor({ timeout: SLOW });
  assert.match(await page.locator('#retag-status').innerText(), /条备忘录/);
  await shot(page, '09-history-review');
  noPageErrors(page);
  await page.close();
});

test('memo history needs a review key: a tag key gets a readable refusal', { timeout: SLOW }, async () => {
  const page = await openConsole(browser.context, { key: TAG_KEY, hash: 'history' });
  await page.click('#hist-search');
  await page.locator('#hist-error', { hasText: '403' }).waitFor();
  const text = await readableError(page, '#hist-error');
  assert.match(text, /403/);
  noPageErrors(page);
  await page.close();
});

test('manager metrics: charts, tables, urgent customers and CSV downloads', { timeout: SLOW }, async () => {
  await storeMemo({ text: '城南几家超市我们的矿泉水断货两天了，老板催着今天必须补上', rep_id: 'metrics-rep-1', customer_id: 'metrics-shop', team: 'metrics-team', domain: 'fmcg_distribution', recorded_at: '2026-02-11T10:00:00+08:00' });
  await storeMemo({ text: '今天终于见到了分管副院长，聊了二十分钟设备更新的事', rep_id: 'metrics-rep-2', customer_id: 'metrics-hosp', team: 'metrics-team', domain: 'medical_devices', recorded_at: '2026-02-12T10:00:00+08:00' });
  await storeMemo({ text: '客户说价格太高，竞品便宜了百分之十，希望我们给个特价', rep_id: 'metrics-rep-2', customer_id: 'metrics-hosp', team: 'metrics-team', domain: 'medical_devices', recorded_at: '2026-02-04T10:00:00+08:00' });
  const page = await openConsole(browser.context, { key: REVIEW_KEY, hash: 'metrics' });
  await page.selectOption('#met-group', 'team');
  await page.fill('#met-from', '2026-01-05');
  await page.fill('#met-to', '2026-02-28');
  await page.click('#met-run');
  await page.locator('#met-report').waitFor({ state: 'visible' });
  await page.locator('#met-chart svg.trend-chart rect.memo-bar').first().waitFor();
  assert.ok(await page.locator('#met-chart path.line-hv').count() >= 1, 'high-value share line drawn');
  const row = page.locator('#met-rows tr[data-group="metrics-team"]');
  assert.ok(await row.count() >= 2, 'two weeks of metrics-team');
  await page.locator('#met-urgent tr[data-customer="metrics-shop"]').waitFor();
  assert.match(await page.locator('#met-urgent tr[data-customer="metrics-shop"]').innerText(), /库存告急/);
  // CSV of each table.
  for (const table of ['rows', 'needs', 'urgent']) {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click(`#view-metrics a.csv[data-table="${table}"]`),
    ]);
    const file = await download.path();
    const csv = fs.readFileSync(file, 'utf8').replace(/^\ufeff/, '');
    const head = { rows: /^team,week,memos,/, needs: /^team,week,need,/, urgent: /^customer_id,memo_id,/ }[table];
    assert.match(csv, head, csv.slice(0, 200));
    if (table === 'urgent') assert.match(csv, /metrics-shop/);
  }
  await shot(page, '10-metrics');
  // By month, grouped by rep.
  await page.selectOption('#met-group', 'rep');
  await page.selectOption('#met-period', 'month');
  await page.click('#met-run');
  await page.locator('#met-rows tr[data-group="metrics-rep-2"][data-period="2026-02-01"]').waitFor();
  noPageErrors(page);
  await page.close();
});
