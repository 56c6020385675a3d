/* needtag web console: plain JavaScript, no framework, no build step, no external resources. */
'use strict';
(function () {
  // ------------------------------------------------------------------ helpers
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  /** el('div', {class: 'x', text: 'y', onclick: f, dataset: {a: 1}}, child, 'text', [more]) */
  function el(tag, attrs, ...children) {
    const node = tag === 'svg' || SVG_TAGS.has(tag)
      ? document.createElementNS('http://www.w3.org/2000/svg', tag)
      : document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'text') node.textContent = v;
        else if (k === 'class') node.setAttribute('class', v);
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k === 'style' && typeof v === 'object') Object.assign(node.style, v);
        else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    appendAll(node, children);
    return node;
  }
  const SVG_TAGS = new Set(['g', 'rect', 'text', 'line', 'title', 'path', 'tspan']);
  function appendAll(node, children) {
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) appendAll(node, c);
      else node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  const pct = (x) => (x === null || x === undefined || Number.isNaN(x) ? '—' : `${Math.round(x * 100)}%`);
  const fix3 = (x) => (x === null || x === undefined || Number.isNaN(x) ? '—' : Number(x).toFixed(3));
  const ms = (x) => (x === null || x === undefined ? '—' : `${x >= 100 ? Math.round(x) : Number(x).toFixed(1)} ms`);
  const chars = (s) => Array.from(s || '');
  const clip = (s, n) => { const c = Array.from(String(s)); return c.length > n ? `${c.slice(0, n - 1).join('')}…` : String(s); };
  const debounce = (f, t) => { let h; return (...a) => { clearTimeout(h); h = setTimeout(() => f(...a), t); }; };

  // ------------------------------------------------------------------ vocabulary (Chinese labels)
  const DOMAIN = {
    medical_devices: '医疗器械', ivd: '体外诊断', pharmacy: '药店', fmcg_distribution: '快消分销',
    auto_aftermarket: '汽车后市场', industrial: '工业', retail_stores: '零售门店', general: '通用',
  };
  const KIND = {
    keyword: '关键词', synonym: '同义词', homophone: '同音纠错', semantic: '语义', retrieval: '检索', pattern: '句式', context: '上下文',
  };
  // The verifier's features, as an analyst reads them (n-gram features are shown as the words).
  const FEATURE = {
    lexical: '命中关键词/同义词', semantic: '语义相似', bm25_rel: '检索排名', bm25_log: '检索得分', negated_only: '只在否定句里出现',
    topic_logit: '需求库匹配分', has_evidence: '有直接证据', anchor_keyword: '关键词命中', anchor_synonym: '同义词命中',
    anchor_homophone: '同音纠错命中', anchor_negated: '所在句被否定', mentions_open: '未被否定的提及', mentions_negated: '被否定的提及',
    negated_before: '前面有否定词', negated_after: '后面说已解决/够用', negated_next_clause: '下一句否定了它', negated_resolved_later: '后文说问题已消失',
    cos_anchor: '与例句相似（本句）', cos_max: '与例句相似（全文）', p_anchor: '语义分类（本句）', rank1_anchor: '本句最像这个需求',
    first_clause: '在第一句', last_clause: '在最后一句', clauses_log: '句子数', memo_open: '整条备忘录像在提这个需求', memo_topic: '整条备忘录涉及这个话题',
  };
  const REGION = { C: '本句', N: '下一句', P: '上一句' };
  function featureLabel(f) {
    const topic = f.startsWith('topic:');
    const name = topic ? f.slice(6) : f;
    if (name.startsWith('counter_example:')) return `反例「${clip(name.slice(16), 24)}」`;
    const m = /^([CNP]):(.*)$/.exec(name);
    if (m) {
      const words = m[2].replace(/\^/g, '⟨').replace(/\$/g, '⟩').replace(/#/g, '◆');
      return `${REGION[m[1]]}「${words}」`;
    }
    return (topic ? '话题·' : '') + (FEATURE[name] || name);
  }
  function whyLine(why) {
    if (!why) return null;
    return el('div', { class: 'why' },
      el('div', { class: 'small' }, `判定 ${pct(why.probability)} = 话题 ${pct(why.topic)} × 表达为需求 ${pct(why.expressed)}（阈值 ${pct(why.threshold)}）`),
      el('div', { class: 'chips' }, (why.reasons || []).map((r) => el('span', {
        class: `chip chip-small reason ${r.weight >= 0 ? 'for' : 'against'}`, title: r.feature,
      }, `${featureLabel(r.feature)} ${r.weight >= 0 ? '+' : ''}${Number(r.weight).toFixed(2)}`))));
  }
  const EVAL_KIND = { kw: '关键词', syn: '同义词', sound: '同音纠错', re: '句式', sem: '语义', bm25: '检索' };
  const TIER = { high: '高价值', standard: '常规', low: '低价值' };
  const ROLE = { decision_maker: '决策人', purchaser: '采购', user: '使用者', finance: '财务', influencer: '影响者' };
  const PACK_KIND = {
    application_form: '申请表', calculator: '测算工具', case_study: '案例', catalog: '资料包', checklist: '清单',
    comparison_sheet: '对比表', manual: '手册', policy: '政策', service: '服务', training: '培训', video: '视频',
  };
  const CATEGORY = {
    single: '单一需求', multi_need: '多需求', negation: '需求否定', vague: '空泛', paraphrase: '转述',
    asr_error: '识别错误', plan: '计划动作', action_negation: '动作否定', colloquial: '口语',
  };
  const STATUS_TEXT = {
    0: '无法连接服务器', 400: '请求有误', 401: '未授权（缺少或无效的 API 密钥）', 403: '禁止访问（密钥权限不足）',
    404: '未找到', 405: '方法不被允许', 408: '请求超时', 413: '内容过大', 415: '不支持的格式', 422: '内容无法处理',
    409: '操作冲突', 429: '请求过多', 431: '请求头过大', 500: '服务器内部错误', 502: '网关错误', 503: '服务暂不可用', 504: '网关超时',
  };
  const CODE_TEXT = {
    invalid_json: '请求内容不是该接口要求的 JSON',
    invalid_request: '缺少必需的字段，或字段格式不对',
    empty_audio: '上传的文件是空的（0 字节）',
    unauthorized: '服务器要求 API 密钥，但请求没有带密钥或密钥无效',
    forbidden: '当前 API 密钥没有这个操作所需的权限',
    not_found: '没有这个接口或条目',
    method_not_allowed: '接口存在，但不支持这种请求方法',
    request_timeout: '处理时间超过了服务器的上限，或请求传输太慢',
    reload_in_progress: '另一次需求库重新加载正在进行',
    headers_too_large: '请求头过大',
    payload_too_large: '上传内容超过了大小上限',
    audio_too_long: '音频超过了时长上限',
    text_too_long: '文字超过了长度上限',
    batch_too_large: '批量条数或总字数超过了上限',
    internal: '服务器内部错误（已记录）',
    unsupported_media_type: '请求的内容类型不受支持',
    unsupported_format: '文件不是支持的音频格式',
    corrupt_audio: '音频文件损坏或不完整',
    audio_too_short: '音频太短',
    invalid_input: '输入内容无法使用',
    invalid_library: '需求库没有通过校验',
    idempotency_key_reused: '同一个幂等键被用于不同的内容',
    too_many_requests: '这个密钥同时在处理的备忘录太多',
    busy: '服务器正忙：所有转写通道和排队位置（或上传通道）都已占满',
    not_ready: '服务器正在启动或停止',
    model_unavailable: '所需的模型不可用',
    network: '请求没有到达服务器（网络中断或服务已停止）',
    bad_response: '服务器的回应不是预期的 JSON',
  };
  const CODE_HINT = {
    unauthorized: '请点击右上角的「密钥」按钮输入 API 密钥，保存后重试。',
    forbidden: '请换用带相应权限（如 admin）的 API 密钥。',
    unsupported_format: '请上传 WAV、MP3、M4A/AAC、AMR、3GP、Ogg/WebM Opus 或 FLAC 格式的录音。',
    corrupt_audio: '文件可能没有传输完整，请重新导出或重新录音后再试。',
    empty_audio: '请选择一个有内容的录音文件。',
    audio_too_short: '请录制至少 1 秒的语音。',
    audio_too_long: '请把录音剪短后再上传。',
    payload_too_large: '请压缩或剪短后再上传。',
    text_too_long: '请缩短文字。',
    busy: '请稍候再试。',
    too_many_requests: '请等前面的备忘录处理完再试。',
    not_ready: '请稍候几秒再试。',
    request_timeout: '请稍后重试，或上传更短的录音。',
    network: '请检查网络连接和服务是否在运行。',
  };
  const RETRYABLE = new Set([0, 408, 429, 502, 503, 504]);

  // ------------------------------------------------------------------ API key (sessionStorage)
  const KEY_STORE = 'needtag.apiKey';
  let memoryKey = '';
  function getKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ''; } catch (_) { return memoryKey; }
  }
  function setKey(k) {
    memoryKey = k;
    try { if (k) sessionStorage.setItem(KEY_STORE, k); else sessionStorage.removeItem(KEY_STORE); } catch (_) { /* private mode */ }
    updateKeyState();
  }
  function updateKeyState() {
    const k = getKey();
    $('#key-state').textContent = k ? `密钥 …${k.slice(-4)}` : '密钥：未设置';
    $('#settings-toggle').classList.toggle('has-key', !!k);
  }

  // ------------------------------------------------------------------ API calls
  class ApiError extends Error {
    constructor(status, code, message, extra) {
      super(message);
      this.status = status;
      this.code = code;
      Object.assign(this, extra || {});
    }
  }
  function authHeaders() {
    const k = getKey();
    return k ? { Authorization: `Bearer ${k}` } : {};
  }
  function parseError(status, text, retryAfter) {
    let data = null;
    try { data = JSON.parse(text); } catch (_) { /* not JSON */ }
    const e = data && data.error;
    if (e && typeof e === 'object') {
      return new ApiError(status, e.code || '', e.message || '', { problems: e.problems, retryAfter });
    }
    const snippet = (text || '').replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300);
    return new ApiError(status, '', snippet || STATUS_TEXT[status] || `HTTP ${status}`, { retryAfter });
  }
  function noteAuth(err) {
    if (err && (err.status === 401 || err.status === 403)) showAuthBanner(err);
  }
  async function api(method, path, body) {
    const headers = Object.assign({ Accept: 'application/json' }, authHeaders());
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'network', String(e && e.message || e));
    }
    const text = await res.text();
    if (!res.ok) {
      const err = parseError(res.status, text, res.headers.get('Retry-After'));
      noteAuth(err);
      throw err;
    }
    try {
      const data = JSON.parse(text);
      if (getKey()) hideAuthBanner();
      return data;
    } catch (_) {
      throw new ApiError(res.status, 'bad_response', text.slice(0, 200));
    }
  }
  /** multipart upload with progress (XHR: fetch cannot report upload progress) */
  function uploadMemo(form, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/v1/memos');
      xhr.setRequestHeader('Accept', 'application/json');
      const k = getKey();
      if (k) xhr.setRequestHeader('Authorization', `Bearer ${k}`);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
      xhr.upload.onload = () => onProgress && onProgress(1);
      xhr.onerror = () => reject(new ApiError(0, 'network', '上传中断'));
      xhr.ontimeout = () => reject(new ApiError(0, 'network', '上传超时'));
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          try { resolve(JSON.parse(xhr.responseText)); if (getKey()) hideAuthBanner(); } catch (_) { reject(new ApiError(xhr.status, 'bad_response', xhr.responseText.slice(0, 200))); }
        } else {
          const err = parseError(xhr.status, xhr.responseText, xhr.getResponseHeader('Retry-After'));
          noteAuth(err);
          reject(err);
        }
      };
      xhr.send(form);
    });
  }

  // ------------------------------------------------------------------ error display
  function errorNodes(err, title) {
    const status = err.status;
    const code = err.code || '';
    const statusText = STATUS_TEXT[status] || (status >= 500 ? '服务器错误' : '请求失败');
    const head = status ? `${title}：HTTP ${status} ${statusText}` : `${title}：${statusText}`;
    const what = CODE_TEXT[code];
    const nodes = [el('strong', { class: 'err-title' }, head)];
    if (what || code) nodes.push(el('p', { class: 'err-what' }, what || '', code ? el('code', { class: 'err-code' }, code) : null));
    if (err.message) nodes.push(el('p', { class: 'err-msg' }, el('span', { class: 'muted' }, '服务器说明：'), err.message));
    let hint = CODE_HINT[code] || (status === 401 ? CODE_HINT.unauthorized : status === 403 ? CODE_HINT.forbidden : '');
    if (err.retryAfter) hint = `${hint} 建议 ${err.retryAfter} 秒后重试。`.trim();
    if (hint) nodes.push(el('p', { class: 'err-hint' }, hint));
    if (status === 401 || status === 403) {
      nodes.push(el('button', { type: 'button', class: 'btn btn-small', onclick: () => openSettings(true) }, '输入 API 密钥'));
    }
    return nodes;
  }
  function showError(box, err, title, retry) {
    box.hidden = false;
    box.replaceChildren(...errorNodes(err, title));
    if (retry && RETRYABLE.has(err.status)) {
      box.appendChild(el('button', { type: 'button', class: 'btn btn-small', onclick: retry }, '重试'));
    }
    if (Array.isArray(err.problems) && err.problems.length) box.appendChild(problemList(err.problems));
  }
  function showMessage(box, title, message) {
    box.hidden = false;
    box.replaceChildren(el('strong', { class: 'err-title' }, title), message ? el('p', { class: 'err-msg' }, message) : null);
  }
  function clearError(box) { box.hidden = true; box.replaceChildren(); }
  function problemList(problems) {
    return el('ol', { class: 'problems' }, problems.map((p) => el('li', null,
      el('code', { class: 'prob-loc' }, p.line ? `${p.file}:${p.line}` : p.file),
      p.field ? el('span', { class: 'prob-field' }, p.field) : null,
      el('span', { class: 'prob-msg' }, p.message),
    )));
  }
  function showAuthBanner(err) {
    const b = $('#auth-banner');
    b.hidden = false;
    const text = err.status === 401
      ? (getKey() ? '服务器拒绝了当前的 API 密钥（无效或已停用）。请点击右上角的「密钥」按钮输入正确的 API 密钥。' : '服务器要求 API 密钥。请先点击右上角的「密钥」按钮输入 API 密钥，然后重试。')
      : '当前 API 密钥没有这个操作所需的权限（例如重新加载需求库需要 admin 权限）。请换用有权限的密钥。';
    b.replaceChildren(
      el('span', null, text),
      el('button', { type: 'button', class: 'btn btn-small', onclick: () => openSettings(true) }, '输入 API 密钥'),
      el('button', { type: 'button', class: 'btn btn-small btn-ghost', 'aria-label': '关闭提示', onclick: hideAuthBanner }, '✕'),
    );
  }
  function hideAuthBanner() { const b = $('#auth-banner'); b.hidden = true; b.replaceChildren(); }

  // ------------------------------------------------------------------ settings panel
  function openSettings(focus) {
    const s = $('#settings');
    s.hidden = false;
    $('#settings-toggle').setAttribute('aria-expanded', 'true');
    if (focus) { $('#api-key').focus(); s.scrollIntoView({ block: 'nearest' }); }
  }
  function closeSettings() {
    $('#settings').hidden = true;
    $('#settings-toggle').setAttribute('aria-expanded', 'false');
  }
  function initSettings() {
    $('#api-key').value = getKey();
    updateKeyState();
    $('#settings-toggle').addEventListener('click', () => ($('#settings').hidden ? openSettings(true) : closeSettings()));
    $('#key-show').addEventListener('click', (e) => {
      const inp = $('#api-key');
      const show = inp.type === 'password';
      inp.type = show ? 'text' : 'password';
      e.currentTarget.textContent = show ? '隐藏' : '显示';
      e.currentTarget.setAttribute('aria-pressed', String(show));
    });
    $('#key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const k = $('#api-key').value.trim();
      setKey(k);
      hideAuthBanner();
      $('#key-msg').textContent = k ? '已保存。之后的请求都会带上这个密钥。' : '已清除密钥。';
      if (k) setTimeout(closeSettings, 600);
    });
    $('#key-clear').addEventListener('click', () => {
      $('#api-key').value = '';
      setKey('');
      $('#key-msg').textContent = '已清除密钥。';
    });
  }

  // ------------------------------------------------------------------ server status, shared catalogues
  async function checkReady() {
    const pill = $('#server-status');
    try {
      const res = await fetch('/readyz', { headers: { Accept: 'application/json' } });
      const data = await res.json().catch(() => ({}));
      if (res.ok && data.ready) {
        pill.textContent = '服务就绪';
        pill.title = `需求库 ${data.library_version || ''} · 转写通道 ${data.workers ?? '?'} · 排队 ${data.queue_depth ?? 0}/${data.queue_capacity ?? '?'}`;
        pill.className = 'pill pill-ok';
        return;
      }
      pill.textContent = '启动中…';
      pill.className = 'pill pill-warn';
    } catch (_) {
      pill.textContent = '无法连接';
      pill.className = 'pill pill-bad';
    }
    setTimeout(checkReady, 3000);
  }

  const catalog = { needs: null, actions: null, packs: null, needById: new Map(), actionById: new Map(), loading: null };
  function loadCatalog(force) {
    if (catalog.loading && !force) return catalog.loading;
    catalog.loading = Promise.all([api('GET', '/v1/needs'), api('GET', '/v1/actions'), api('GET', '/v1/packs')])
      .then(([needs, actions, packs]) => {
        catalog.needs = needs; catalog.actions = actions; catalog.packs = packs;
        catalog.needById = new Map(needs.map((n) => [n.id, n]));
        catalog.actionById = new Map(actions.map((a) => [a.id, a]));
        return catalog;
      })
      .catch((e) => { catalog.loading = null; throw e; });
    return catalog.loading;
  }
  const needName = (id) => (catalog.needById.get(id) || {}).name || '';
  const actionName = (id) => (catalog.actionById.get(id) || {}).name || '';
  const labelName = (id) => needName(id) || actionName(id);

  // ------------------------------------------------------------------ tabs / routing
  const VIEWS = ['try', 'library', 'eval', 'history', 'metrics'];
  const viewInit = {};
  function showView(name, push) {
    if (!VIEWS.includes(name)) name = 'try';
    for (const v of VIEWS) {
      $(`#view-${v}`).hidden = v !== name;
      const t = $(`#tab-${v}`);
      t.setAttribute('aria-selected', String(v === name));
      t.tabIndex = v === name ? 0 : -1;
    }
    if (push && location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
    if (viewInit[name]) { const f = viewInit[name]; viewInit[name] = null; f(); }
    if (name === 'eval' && report) renderChart(chartLabels()); // it may have been drawn while hidden
    if (name === 'metrics' && sales) renderMetrics();
    hideTip();
  }
  function initTabs() {
    for (const t of $$('.tabs [role=tab]')) {
      t.addEventListener('click', () => showView(t.dataset.view, true));
      t.addEventListener('keydown', (e) => {
        if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
        const i = VIEWS.indexOf(t.dataset.view);
        const n = VIEWS[(i + (e.key === 'ArrowRight' ? 1 : VIEWS.length - 1)) % VIEWS.length];
        showView(n, true);
        $(`#tab-${n}`).focus();
      });
    }
    window.addEventListener('hashchange', () => showView(location.hash.slice(1), false));
  }

  // ------------------------------------------------------------------ tooltip (hover / focus / tap)
  let tipOwner = null;
  function placeTip() {
    const tip = $('#tip');
    if (!tipOwner || tip.hidden) return;
    if (!tipOwner.isConnected) { hideTip(); return; }
    const r = tipOwner.getBoundingClientRect();
    const vw = document.documentElement.clientWidth;
    const tw = Math.min(tip.offsetWidth, vw - 16);
    let left = r.left + r.width / 2 - tw / 2;
    left = Math.max(8, Math.min(left, vw - tw - 8));
    let top = r.top - tip.offsetHeight - 8;
    if (top < 8) top = r.bottom + 8;
    tip.style.left = `${left}px`;
    tip.style.top = `${top}px`;
  }
  function showTip(target, nodes) {
    const tip = $('#tip');
    tip.replaceChildren(...nodes);
    tip.hidden = false;
    tipOwner = target;
    placeTip();
  }
  function hideTip() { const t = $('#tip'); if (t) { t.hidden = true; } tipOwner = null; }
  function bindTip(node, build) {
    node.addEventListener('mouseenter', () => showTip(node, build()));
    node.addEventListener('mouseleave', () => { if (tipOwner === node) hideTip(); });
    node.addEventListener('focus', () => showTip(node, build()));
    node.addEventListener('blur', () => { if (tipOwner === node) hideTip(); });
    node.addEventListener('click', (e) => {
      e.stopPropagation(); // a tap shows it (touch screens have no hover); a tap elsewhere hides it
      showTip(node, build());
    });
  }
  document.addEventListener('click', () => hideTip());
  window.addEventListener('scroll', placeTip, { passive: true, capture: true });
  window.addEventListener('resize', placeTip);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') hideTip(); });

  // ------------------------------------------------------------------ 试一试
  const NEED_COLORS = [
    ['#ffe0b2', '#e65100'], ['#c8e6c9', '#2e7d32'], ['#bbdefb', '#1565c0'], ['#f8bbd0', '#ad1457'],
    ['#d1c4e9', '#4527a0'], ['#fff59d', '#9e7700'], ['#b2ebf2', '#00838f'], ['#ffccbc', '#bf360c'],
  ];
  const ACTION_COLORS = ['#00897b', '#6d4c41', '#5e35b1', '#c62828', '#3949ab', '#558b2f'];
  let inputMode = 'text';
  let busy = false;

  function recordedAtValue() {
    const v = $('#recorded-at').value;
    if (!v) return undefined;
    return `${v.length === 16 ? `${v}:00` : v}+08:00`;
  }
  function setInputMode(m) {
    inputMode = m;
    for (const b of $$('.seg [role=tab]')) b.setAttribute('aria-selected', String(b.dataset.input === m));
    for (const p of $$('.input-panel')) p.hidden = p.dataset.panel !== m;
    const btn = $('#tag-btn');
    btn.hidden = m === 'record';
    btn.textContent = m === 'text' ? '打标签' : '上传并转写';
    for (const id of ['#rep-id', '#customer-id']) $(id).disabled = m === 'text';
  }
  function setBusy(b, status) {
    busy = b;
    $('#tag-btn').disabled = b;
    $('#audio-file').disabled = b;
    $('#rec-start').disabled = b || !!recorder;
    $('#try-status').textContent = status || '';
    $('#try-status').classList.toggle('working', b);
  }

  async function doTag() {
    const box = $('#try-error');
    clearError(box);
    const text = $('#memo-text').value.trim();
    if (!text) { showMessage(box, '请先输入备忘录文字', '把拜访后的语音备忘录文字粘贴到上面的输入框里。'); $('#memo-text').focus(); return; }
    const body = { text, mode: (document.querySelector('input[name=mode]:checked') || {}).value || 'hybrid' };
    if ($('#explain').checked) body.explain = true;
    const ra = recordedAtValue();
    if (ra) body.recorded_at = ra;
    setBusy(true, '正在打标签…');
    try {
      const res = await api('POST', '/v1/tag', body);
      setBusy(false, `完成，用时 ${ms(res.timings && res.timings.total_ms)}`);
      renderResult(res, 'text');
    } catch (e) {
      setBusy(false, '');
      showError(box, e, '打标签失败', doTag);
    }
  }

  async function doUpload(blob, filename, source) {
    const box = $('#try-error');
    clearError(box);
    if (!blob) { showMessage(box, '请先选择音频文件', '点击「选择文件」选一段录音，选好后会自动上传。'); return; }
    const form = new FormData();
    form.append('audio', blob, filename || 'memo');
    const rep = $('#rep-id').value.trim();
    const cust = $('#customer-id').value.trim();
    const domain = $('#domain').value;
    const ra = recordedAtValue();
    if (rep) form.append('rep_id', rep);
    if (cust) form.append('customer_id', cust);
    if (domain) form.append('domain', domain);
    if (ra) form.append('recorded_at', ra);
    const t0 = performance.now();
    let phase = '上传中';
    let timer = null;
    const tick = () => {
      const s = ((performance.now() - t0) / 1000).toFixed(0);
      setBusy(true, `${phase}… ${s} 秒`);
    };
    setBusy(true, `上传中… ${filename || ''}`);
    timer = setInterval(tick, 500);
    try {
      const res = await uploadMemo(form, (f) => {
        phase = f >= 1 ? '正在转写（通常几秒）' : `上传中 ${Math.round(f * 100)}%`;
        tick();
      });
      clearInterval(timer);
      setBusy(false, `完成，用时 ${ms(res.timings && res.timings.total_ms)}`);
      renderResult(res, source);
    } catch (e) {
      clearInterval(timer);
      setBusy(false, '');
      showError(box, e, source === 'record' ? '录音上传失败' : '上传失败', () => doUpload(blob, filename, source));
    }
  }

  // ---- recording
  let recorder = null;
  let recTimer = null;
  let recUrl = null;
  function pickMime() {
    if (!window.MediaRecorder || !MediaRecorder.isTypeSupported) return '';
    return ['audio/webm;codecs=opus', 'audio/webm', 'audio/ogg;codecs=opus', 'audio/mp4'].find((t) => MediaRecorder.isTypeSupported(t)) || '';
  }
  function extFor(mime) {
    if (/webm/.test(mime)) return 'webm';
    if (/ogg/.test(mime)) return 'ogg';
    if (/mp4|aac|m4a/.test(mime)) return 'm4a';
    return 'webm';
  }
  async function startRecording() {
    const box = $('#try-error');
    clearError(box);
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showMessage(box, '无法录音：浏览器不允许使用麦克风', window.isSecureContext === false
        ? '录音只能在 HTTPS 或 localhost 打开的页面上使用。请改用 HTTPS 地址，或用「上传音频」上传手机录好的文件。'
        : '这个浏览器不支持网页录音，请用「上传音频」上传录好的文件。');
      return;
    }
    if (!window.MediaRecorder) {
      showMessage(box, '无法录音：浏览器不支持 MediaRecorder', '请换用新版 Chrome、Edge、Firefox 或 Safari，或用「上传音频」。');
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    } catch (e) {
      const name = e && e.name;
      const msg = name === 'NotAllowedError' ? '麦克风权限被拒绝。请在浏览器地址栏旁的权限设置里允许使用麦克风。'
        : name === 'NotFoundError' ? '没有找到麦克风设备。'
          : name === 'NotReadableError' ? '麦克风被其他程序占用。' : `${name || ''} ${e && e.message || e}`;
      showMessage(box, '无法开始录音', msg);
      return;
    }
    const mime = pickMime();
    let mr;
    try {
      mr = new MediaRecorder(stream, mime ? { mimeType: mime, audioBitsPerSecond: 32000 } : undefined);
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      showMessage(box, '无法开始录音', String(e && e.message || e));
      return;
    }
    const chunks = [];
    const t0 = performance.now();
    recorder = mr;
    mr.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
    mr.onerror = (e) => showMessage(box, '录音出错', String(e.error && e.error.message || e.error || e));
    mr.onstop = () => {
      clearInterval(recTimer);
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      $('#rec-start').disabled = busy;
      $('#rec-stop').disabled = true;
      $('#rec-start').classList.remove('recording');
      const type = mr.mimeType || mime || 'audio/webm';
      const blob = new Blob(chunks, { type });
      if (recUrl) URL.revokeObjectURL(recUrl);
      recUrl = URL.createObjectURL(blob);
      const audio = $('#rec-audio');
      audio.src = recUrl;
      audio.hidden = false;
      if (!blob.size) { showMessage(box, '录音是空的', '没有录到任何数据，请检查麦克风后重试。'); return; }
      doUpload(blob, `recording.${extFor(type)}`, 'record');
    };
    mr.start(250);
    $('#rec-start').disabled = true;
    $('#rec-start').classList.add('recording');
    $('#rec-stop').disabled = false;
    $('#rec-audio').hidden = true;
    const timeEl = $('#rec-time');
    const update = () => {
      const s = (performance.now() - t0) / 1000;
      timeEl.textContent = `${s.toFixed(1)} 秒`;
      timeEl.dataset.seconds = s.toFixed(1);
      if (s >= 120 && mr.state === 'recording') mr.stop();
    };
    update();
    recTimer = setInterval(update, 100);
    $('#try-status').textContent = '录音中…';
  }
  function stopRecording() {
    if (recorder && recorder.state === 'recording') {
      recorder.requestData();
      recorder.stop();
    }
  }

  // ---- rendering a result
  function renderResult(res, source) {
    const isMemo = !!res.transcript;
    const text = isMemo ? (res.transcript.text || '') : (res.text || '');
    const needColor = new Map();
    (res.needs || []).forEach((n, i) => needColor.set(n.id, NEED_COLORS[i % NEED_COLORS.length]));
    const actionColor = new Map();
    (res.actions || []).forEach((a, i) => actionColor.set(a.id, ACTION_COLORS[i % ACTION_COLORS.length]));

    $('#result').hidden = false;
    $('#text-source').textContent = isMemo ? '（转写文字）' : '（输入文字）';
    renderSummary(res, isMemo, source);
    renderLegend(res, needColor, actionColor);
    renderMemoText(text, res, needColor, actionColor, isMemo);
    renderSegments(res, isMemo);
    renderNeeds(res.needs || [], needColor);
    renderRuledOut(res.ruled_out || []);
    renderDropped(res.dropped);
    renderActions(res.actions || [], actionColor);
    renderSteps(res.next_steps || []);
    renderContacts(res.contacts || []);
    renderTimings(res.timings || {}, isMemo);
    $('#raw-json').textContent = JSON.stringify(res, null, 2);
    $('#result').scrollIntoView({ block: 'start', behavior: 'smooth' });
  }

  function renderSummary(res, isMemo, source) {
    const items = [];
    const v = res.vague || {};
    if (v.flag) {
      items.push(el('div', { class: 'vague vague-on', id: 'vague' },
        el('strong', null, '⚠ 空泛备忘录'), v.reason ? el('span', { class: 'vague-reason' }, v.reason) : null));
    } else {
      items.push(el('div', { class: 'vague vague-off', id: 'vague' }, el('strong', null, '✓ 内容具体'), el('span', { class: 'vague-reason' }, '有可跟进的需求、动作、联系人、数字或日期')));
    }
    const chips = [];
    if (res.high_value) chips.push(el('span', { class: 'badge badge-high', id: 'high-value' }, '★ 高价值拜访'));
    if (isMemo) {
      chips.push(el('span', { class: `chip ${res.speech_detected ? '' : 'chip-warn'}`, id: 'speech-detected' }, res.speech_detected ? '检测到语音' : '未检测到语音'));
      if (res.duration_s !== undefined) chips.push(el('span', { class: 'chip' }, `时长 ${Number(res.duration_s).toFixed(1)} 秒`));
      const a = res.audio || {};
      if (a.container) chips.push(el('span', { class: 'chip', title: `${a.source_sample_rate || '?'} Hz · ${a.source_channels || '?'} 声道` }, `${a.container} / ${a.codec}${a.truncated ? '（已截断）' : ''}`));
      if (source === 'record') chips.push(el('span', { class: 'chip' }, '浏览器录音'));
      if (res.rep_id) chips.push(el('span', { class: 'chip' }, `代表 ${res.rep_id}`));
      if (res.customer_id) chips.push(el('span', { class: 'chip' }, `客户 ${res.customer_id}`));
      if (res.domain) {
        const opt = Array.from($('#domain').options).find((o) => o.value === res.domain);
        chips.push(el('span', { class: 'chip', title: res.domain }, `行业 ${opt ? opt.textContent : res.domain}`));
      }
    } else {
      chips.push(el('span', { class: 'chip' }, res.mode === 'keyword' ? '仅关键词' : '混合匹配'));
    }
    if (res.recorded_at) chips.push(el('span', { class: 'chip', title: res.recorded_at }, `录音时间 ${String(res.recorded_at).slice(0, 16).replace('T', ' ')}`));
    if (res.library_version) chips.push(el('span', { class: 'chip chip-muted' }, `需求库 ${res.library_version}`));
    items.push(el('div', { class: 'chips' }, chips));
    $('#summary').replaceChildren(...items);
  }

  function renderLegend(res, needColor, actionColor) {
    const items = [];
    for (const n of res.needs || []) {
      const [bg, fg] = needColor.get(n.id);
      items.push(el('span', { class: 'legend-item', dataset: { need: n.id } }, el('span', { class: 'swatch', style: { background: bg, borderColor: fg } }), n.name));
    }
    for (const a of res.actions || []) {
      const c = actionColor.get(a.id);
      items.push(el('span', { class: 'legend-item', dataset: { action: a.id } }, el('span', { class: 'swatch swatch-action', style: { borderColor: c } }), `动作：${a.name}`));
    }
    if ((res.ruled_out || []).length) items.push(el('span', { class: 'legend-item' }, el('span', { class: 'swatch swatch-ruled' }), '已排除'));
    if ((res.contacts || []).length) items.push(el('span', { class: 'legend-item' }, el('span', { class: 'swatch swatch-contact' }), '联系人'));
    if (!items.length) items.push(el('span', { class: 'muted small' }, '没有可标注的证据'));
    $('#legend').replaceChildren(...items);
  }

  function renderMemoText(text, res, needColor, actionColor, isMemo) {
    const view = $('#memo-view');
    const cps = chars(text);
    if (!cps.length) {
      view.replaceChildren(el('p', { class: 'muted' }, isMemo ? (res.speech_detected === false ? '（没有识别到语音：录音里只有静音、噪声或提示音）' : '（转写结果为空）') : '（空）'));
      return;
    }
    const spans = [];
    const add = (s) => {
      const start = Math.max(0, Math.min(cps.length, s.start | 0));
      const end = Math.max(start, Math.min(cps.length, s.end | 0));
      if (end > start) spans.push(Object.assign(s, { start, end }));
    };
    for (const n of res.needs || []) for (const ev of n.evidence || []) add({ type: 'need', id: n.id, name: n.name, conf: n.confidence, ev, start: ev.start, end: ev.end });
    for (const a of res.actions || []) for (const ev of a.evidence || []) add({ type: 'action', id: a.id, name: a.name, conf: a.confidence, tier: a.tier, ev, start: ev.start, end: ev.end });
    for (const r of res.ruled_out || []) if (r.evidence) add({ type: 'ruled', id: r.id, name: r.name, cue: r.cue, ev: r.evidence, start: r.evidence.start, end: r.evidence.end });
    for (const c of res.contacts || []) add({ type: 'contact', c, start: c.start, end: c.end });
    const cuts = new Set([0, cps.length]);
    for (const s of spans) { cuts.add(s.start); cuts.add(s.end); }
    const bounds = Array.from(cuts).sort((a, b) => a - b);
    const out = [];
    for (let i = 0; i + 1 < bounds.length; i++) {
      const a = bounds[i]; const b = bounds[i + 1];
      const piece = cps.slice(a, b).join('');
      const cover = spans.filter((s) => s.start <= a && s.end >= b);
      if (!cover.length) { out.push(document.createTextNode(piece)); continue; }
      const needs = cover.filter((s) => s.type === 'need');
      const acts = cover.filter((s) => s.type === 'action');
      const ruled = cover.filter((s) => s.type === 'ruled');
      const contacts = cover.filter((s) => s.type === 'contact');
      const cls = ['ev'];
      const style = {};
      if (needs.length) {
        const [bg, fg] = needColor.get(needs[0].id);
        style.background = bg; style.boxShadow = `inset 0 -2px 0 ${fg}`;
        cls.push('ev-need');
        if (new Set(needs.map((s) => s.id)).size > 1) cls.push('ev-multi');
      } else if (acts.length) {
        cls.push('ev-action');
      } else if (ruled.length) {
        cls.push('ev-ruled');
      }
      if (acts.length) style.borderBottom = `3px dashed ${actionColor.get(acts[0].id)}`;
      if (contacts.length) cls.push('ev-contact');
      const dataset = {};
      if (needs.length) dataset.needs = uniq(needs.map((s) => s.id)).join(' ');
      if (acts.length) dataset.actions = uniq(acts.map((s) => s.id)).join(' ');
      if (ruled.length) dataset.ruled = uniq(ruled.map((s) => s.id)).join(' ');
      if (contacts.length) dataset.contact = '1';
      const mark = el('mark', { class: cls.join(' '), style, dataset, tabindex: '0' }, piece);
      bindTip(mark, () => cover.map(tipLine));
      out.push(mark);
    }
    view.replaceChildren(...out);
  }
  const uniq = (xs) => Array.from(new Set(xs));
  function tipLine(s) {
    if (s.type === 'contact') {
      const c = s.c;
      return el('div', { class: 'tip-line' }, el('b', null, `联系人：${c.mention}`), ' ', [c.department, c.title, ROLE[c.role]].filter(Boolean).join(' · '));
    }
    const ev = s.ev || {};
    const label = s.type === 'need' ? '需求' : s.type === 'action' ? '动作' : '已排除';
    const parts = [KIND[ev.kind] || ev.kind];
    if (s.type !== 'ruled') parts.push(`置信度 ${pct(s.conf)}`);
    if (s.type === 'ruled') parts.push(`否定词「${s.cue}」`);
    if (s.tier) parts.push(TIER[s.tier] || s.tier);
    return el('div', { class: 'tip-line' },
      el('b', null, `${label}：${s.name}`), ' ', parts.join(' · '),
      ev.matched && ev.matched !== ev.text ? el('div', { class: 'tip-sub' }, `匹配：${clip(ev.matched, 40)}`) : null);
  }

  function renderSegments(res, isMemo) {
    const box = $('#segments');
    if (!isMemo) { box.replaceChildren(); return; }
    const segs = (res.transcript && res.transcript.segments) || [];
    const dropped = (res.transcript && res.transcript.dropped) || [];
    const parts = [];
    if (segs.length) {
      parts.push(el('details', null, el('summary', null, `分段（${segs.length}）`),
        el('ol', { class: 'seg-list' }, segs.map((s) => el('li', null, el('span', { class: 'mono muted' }, `${Number(s.start).toFixed(1)}–${Number(s.end).toFixed(1)} 秒`), ' ', s.text)))));
    }
    if (dropped.length) {
      parts.push(el('details', null, el('summary', null, `被过滤的识别文字（${dropped.length}）`),
        el('ul', { class: 'seg-list' }, dropped.map((d) => el('li', null, d.text, ' ', el('span', { class: 'muted' }, `（${d.reason}）`))))));
    }
    box.replaceChildren(...parts);
  }

  function confBar(conf, color) {
    const w = Math.max(0, Math.min(1, Number(conf) || 0)) * 100;
    return el('div', { class: 'conf' },
      el('div', { class: 'bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '1', 'aria-valuenow': String(conf), 'aria-label': '置信度' },
        el('span', { style: { width: `${w}%`, background: color || '' } })),
      el('span', { class: 'conf-num' }, `置信度 ${pct(conf)}`));
  }
  function evidenceList(evs) {
    if (!evs || !evs.length) return null;
    return el('ul', { class: 'evidence' }, evs.map((ev) => el('li', null,
      el('span', { class: `kind kind-${ev.kind}` }, KIND[ev.kind] || ev.kind), ' ',
      el('span', { class: 'ev-text' }, `「${ev.text}」`),
      ev.matched && ev.matched !== ev.text ? el('span', { class: 'muted', title: ev.matched }, ` ≈ ${clip(ev.matched, 28)}`) : null,
      el('span', { class: 'muted small' }, ` ${Number(ev.score).toFixed(2)}`))));
  }
  function safeLink(href) {
    try {
      const u = new URL(href, location.href);
      return (u.protocol === 'http:' || u.protocol === 'https:') ? u.href : null;
    } catch (_) { return null; }
  }
  function packLink(p) {
    const href = safeLink(p.link);
    const title = href ? el('a', { class: 'pack-link', href, target: '_blank', rel: 'noopener noreferrer', dataset: { pack: p.id } }, p.title)
      : el('span', { class: 'pack-link', dataset: { pack: p.id } }, p.title);
    return el('li', { class: 'pack' }, title, ' ', el('span', { class: 'chip chip-small' }, PACK_KIND[p.kind] || p.kind),
      p.description ? el('div', { class: 'muted small' }, p.description) : null);
  }
  function highlightMarks(attr, id, on) {
    for (const m of $$(`#memo-view mark[data-${attr}~="${CSS.escape(id)}"]`)) m.classList.toggle('focus', on);
  }
  function renderNeeds(needs, needColor) {
    $('#needs-count').textContent = needs.length ? String(needs.length) : '';
    if (!needs.length) { $('#needs-list').replaceChildren(el('p', { class: 'muted' }, '没有识别到客户需求。')); return; }
    $('#needs-list').replaceChildren(...needs.map((n) => {
      const [bg, fg] = needColor.get(n.id);
      const card = el('article', { class: 'item need', dataset: { id: n.id }, style: { borderLeftColor: fg } },
        el('div', { class: 'item-head' },
          el('span', { class: 'swatch', style: { background: bg, borderColor: fg } }),
          el('strong', { class: 'item-name' }, n.name), ' ', el('code', { class: 'muted small' }, n.id),
          el('span', { class: 'chip chip-small' }, DOMAIN[n.domain] || n.domain)),
        confBar(n.confidence, fg),
        evidenceList(n.evidence),
        whyLine(n.why),
        (n.packs || []).length ? el('div', { class: 'packs' }, el('div', { class: 'packs-title' }, '解决方案包'), el('ul', { class: 'pack-list' }, n.packs.map(packLink))) : null);
      card.addEventListener('mouseenter', () => highlightMarks('needs', n.id, true));
      card.addEventListener('mouseleave', () => highlightMarks('needs', n.id, false));
      return card;
    }));
  }
  function renderRuledOut(list) {
    $('#ruled-count').textContent = list.length ? String(list.length) : '';
    if (!list.length) { $('#ruled-list').replaceChildren(el('p', { class: 'muted small' }, '无')); return; }
    $('#ruled-list').replaceChildren(...list.map((r) => el('article', { class: 'item ruled', dataset: { id: r.id } },
      el('div', { class: 'item-head' }, el('s', { class: 'item-name' }, r.name), ' ', el('code', { class: 'muted small' }, r.id)),
      el('div', null, '否定词 ', el('span', { class: 'cue' }, `「${r.cue}」`),
        r.evidence ? [' · 提到 ', el('span', { class: 'ev-text' }, `「${r.evidence.text}」`), el('span', { class: 'muted small' }, `（${KIND[r.evidence.kind] || r.evidence.kind}）`)] : null))));
  }
  function renderDropped(list) {
    const box = $('#dropped-box');
    box.hidden = !Array.isArray(list);
    if (!Array.isArray(list)) return;
    $('#dropped-count').textContent = list.length ? String(list.length) : '';
    $('#dropped-list').replaceChildren(...(list.length ? list.map((d) => el('article', { class: 'item dropped', dataset: { id: d.id } },
      el('div', { class: 'item-head' }, el('span', { class: 'item-name' }, d.name), ' ', el('code', { class: 'muted small' }, d.id),
        el('span', { class: 'muted small' }, ` ${pct(d.confidence)}`)),
      el('div', { class: 'small' }, '读到的句子 ', el('span', { class: 'ev-text' }, `「${d.clause}」`)),
      whyLine(d.why))) : [el('p', { class: 'muted small' }, '无')]));
  }
  function renderActions(list, actionColor) {
    $('#actions-count').textContent = list.length ? String(list.length) : '';
    if (!list.length) { $('#actions-list').replaceChildren(el('p', { class: 'muted' }, '没有报告已完成的销售动作。')); return; }
    $('#actions-list').replaceChildren(...list.map((a) => {
      const c = actionColor.get(a.id);
      const card = el('article', { class: 'item action', dataset: { id: a.id }, style: { borderLeftColor: c } },
        el('div', { class: 'item-head' },
          el('span', { class: 'swatch swatch-action', style: { borderColor: c } }),
          el('strong', { class: 'item-name' }, a.name), ' ', el('code', { class: 'muted small' }, a.id),
          el('span', { class: `badge tier-${a.tier}` }, TIER[a.tier] || a.tier)),
        confBar(a.confidence, c),
        evidenceList(a.evidence));
      card.addEventListener('mouseenter', () => highlightMarks('actions', a.id, true));
      card.addEventListener('mouseleave', () => highlightMarks('actions', a.id, false));
      return card;
    }));
  }
  const WEEKDAY = ['周日', '周一', '周二', '周三', '周四', '周五', '周六'];
  function fmtDate(d) {
    if (!d) return '';
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(d);
    if (!m) return d;
    const wd = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])).getDay();
    return `${d}（${WEEKDAY[wd]}）`;
  }
  function renderSteps(list) {
    $('#steps-count').textContent = list.length ? String(list.length) : '';
    if (!list.length) { $('#steps-list').replaceChildren(el('p', { class: 'muted' }, '没有提到下一步。')); return; }
    $('#steps-list').replaceChildren(...list.map((s) => {
      let due = '未说日期';
      if (s.due_from && s.due_to && s.due_from !== s.due_to) due = `${fmtDate(s.due_from)} 至 ${fmtDate(s.due_to)}`;
      else if (s.due_from || s.due_to) due = fmtDate(s.due_from || s.due_to);
      return el('article', { class: 'item step' },
        el('div', { class: 'step-due', dataset: { from: s.due_from || '', to: s.due_to || '' } }, el('span', { class: 'muted small' }, '日期 '), due, s.when ? el('span', { class: 'muted' }, ` · “${s.when}”`) : null),
        el('div', { class: 'step-text' }, s.text),
        s.action ? el('div', { class: 'muted small' }, '计划动作：', actionName(s.action) || s.action) : null);
    }));
  }
  function renderContacts(list) {
    $('#contacts-count').textContent = list.length ? String(list.length) : '';
    if (!list.length) { $('#contacts-list').replaceChildren(el('p', { class: 'muted' }, '没有提到联系人。')); return; }
    $('#contacts-list').replaceChildren(el('ul', { class: 'contacts' }, list.map((c) => el('li', { class: 'contact' },
      el('strong', { class: 'contact-mention' }, c.mention),
      c.role ? el('span', { class: `badge role-${c.role}` }, ROLE[c.role] || c.role) : null,
      el('span', { class: 'muted small' }, [c.department, c.surname ? `姓${c.surname}` : '', c.title].filter(Boolean).join(' · '))))));
  }
  function renderTimings(t, isMemo) {
    const stages = [['decode_ms', '解码'], ['vad_ms', '语音检测'], ['asr_ms', '转写'], ['tag_ms', '打标签']];
    const total = Number(t.total_ms) || stages.reduce((a, [k]) => a + (Number(t[k]) || 0), 0) || 1;
    const rows = stages.filter(([k]) => isMemo || Number(t[k]) > 0).map(([k, name]) => el('div', { class: 'timing' },
      el('span', { class: 'timing-name' }, name),
      el('div', { class: 'bar bar-thin' }, el('span', { style: { width: `${Math.min(100, (Number(t[k]) || 0) / total * 100)}%` } })),
      el('span', { class: 'timing-val mono' }, ms(t[k]))));
    rows.push(el('div', { class: 'timing timing-total' }, el('span', { class: 'timing-name' }, '合计'), el('span'), el('span', { class: 'timing-val mono' }, ms(t.total_ms))));
    $('#timings').replaceChildren(...rows);
  }

  function initTry() {
    for (const b of $$('.seg [role=tab]')) b.addEventListener('click', () => setInputMode(b.dataset.input));
    setInputMode('text');
    const ta = $('#memo-text');
    const count = () => { $('#text-count').textContent = `${chars(ta.value).length} 字`; };
    ta.addEventListener('input', count);
    ta.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) doTag(); });
    $('#fill-example').addEventListener('click', () => {
      ta.value = '张主任提到关节镜手术后患者投诉疼痛管理不到位，希望我们下周三带镇痛方案对比表过来，另外库存还够，暂时不用补货';
      $('#recorded-at').value = '2026-03-04T17:20';
      count();
    });
    $('#tag-btn').addEventListener('click', () => {
      if (busy) return;
      if (inputMode === 'text') doTag();
      else { const f = $('#audio-file').files[0]; doUpload(f, f && f.name, 'upload'); }
    });
    $('#audio-file').addEventListener('change', () => {
      const f = $('#audio-file').files[0];
      if (f) doUpload(f, f.name, 'upload');
    });
    $('#rec-start').addEventListener('click', startRecording);
    $('#rec-stop').addEventListener('click', stopRecording);
  }

  // ------------------------------------------------------------------ 需求库
  function matches(q, ...fields) {
    if (!q) return true;
    for (const f of fields) {
      if (f === undefined || f === null) continue;
      if (Array.isArray(f)) { if (f.some((x) => String(x).toLowerCase().includes(q))) return true; } else if (String(f).toLowerCase().includes(q)) return true;
    }
    return false;
  }
  function chipList(title, items, q, cls) {
    if (!items || !items.length) return null;
    return el('div', { class: 'lib-field' }, el('span', { class: 'lib-field-title' }, `${title}（${items.length}）`),
      el('div', { class: 'chips' }, items.map((x) => el('span', { class: `chip chip-small ${cls || ''} ${q && String(x).toLowerCase().includes(q) ? 'hit' : ''}` }, x))));
  }
  function textList(title, items, q, mono) {
    if (!items || !items.length) return null;
    return el('div', { class: 'lib-field' }, el('span', { class: 'lib-field-title' }, `${title}（${items.length}）`),
      el('ul', { class: `lib-list ${mono ? 'mono' : ''}` }, items.map((x) => el('li', { class: q && String(x).toLowerCase().includes(q) ? 'hit' : '' }, x))));
  }
  let libData = null;
  async function loadLibrary() {
    const box = $('#lib-error');
    clearError(box);
    try {
      const [info] = await Promise.all([api('GET', '/v1/library'), loadCatalog(true)]);
      libData = { info, needs: catalog.needs, actions: catalog.actions, packs: catalog.packs };
      renderLibInfo(info);
      const sel = $('#lib-domain');
      const cur = sel.value;
      sel.replaceChildren(el('option', { value: '' }, '全部领域'),
        ...uniq(libData.needs.map((n) => n.domain)).sort().map((d) => el('option', { value: d }, DOMAIN[d] || d)));
      sel.value = cur;
      renderLibrary();
    } catch (e) {
      showError(box, e, '加载需求库失败', loadLibrary);
    }
  }
  function renderLibInfo(info) {
    const per = Object.entries(info.needs_per_domain || {}).sort((a, b) => b[1] - a[1]);
    $('#lib-info').replaceChildren(
      el('h2', { class: 'card-title' }, info.name, ' ', el('span', { class: 'badge badge-version', id: 'lib-version' }, info.version)),
      info.description ? el('p', { class: 'muted' }, info.description) : null,
      el('div', { class: 'metrics metrics-small' },
        metric('需求', info.needs), metric('销售动作', info.actions), metric('解决方案包', info.packs)),
      el('div', { class: 'chips' }, per.map(([d, n]) => el('span', { class: 'chip chip-small' }, `${DOMAIN[d] || d} ${n}`))),
      el('p', { class: 'hint', id: 'lib-verifier' }, info.verifier
        ? `判定模型：在 ${info.verifier.memos} 条标注备忘录上训练，阈值 ${fix3(info.verifier.threshold_hybrid)}，交叉验证 F1 ${fix3(info.verifier.cross_validated_f1)}`
        : '判定模型：无（按各需求的阈值判定）'),
      el('p', { class: 'hint' }, `来源：${info.source === 'embedded' ? '编译进程序的默认需求库' : info.source}`));
  }
  function metric(label, value, sub) {
    return el('div', { class: 'metric' }, el('div', { class: 'metric-val' }, value), el('div', { class: 'metric-label' }, label), sub ? el('div', { class: 'metric-sub' }, sub) : null);
  }
  function renderLibrary() {
    if (!libData) return;
    const q = $('#lib-search').value.trim().toLowerCase();
    const dom = $('#lib-domain').value;
    const packUsers = new Map();
    for (const n of libData.needs) for (const p of n.packs || []) { if (!packUsers.has(p)) packUsers.set(p, []); packUsers.get(p).push(n); }

    const needs = libData.needs.filter((n) => (!dom || n.domain === dom) && matches(q, n.id, n.name, n.domain, DOMAIN[n.domain], n.description,
      n.keywords, n.synonyms, n.examples, n.counter_examples, n.exclusions, n.packs, (n.pack_details || []).map((p) => p.title)));
    const actions = dom ? [] : libData.actions.filter((a) => matches(q, a.id, a.name, a.description, TIER[a.tier], a.keywords, a.patterns, a.examples));
    const packs = libData.packs.filter((p) => (!dom || (packUsers.get(p.id) || []).some((n) => n.domain === dom))
      && matches(q, p.id, p.title, p.kind, PACK_KIND[p.kind], p.description));
    const open = !!q;

    $('#lib-needs-count').textContent = `${needs.length}/${libData.needs.length}`;
    $('#lib-actions-count').textContent = `${actions.length}/${libData.actions.length}`;
    $('#lib-packs-count').textContent = `${packs.length}/${libData.packs.length}`;
    $('#lib-counts').textContent = q || dom ? `找到 ${needs.length} 个需求、${actions.length} 个动作、${packs.length} 个解决方案包` : '';

    $('#lib-needs').replaceChildren(...(needs.length ? needs.map((n) => el('details', { class: 'lib-item', dataset: { id: n.id }, open },
      el('summary', null, el('strong', null, n.name), ' ', el('code', { class: 'muted small' }, n.id), ' ',
        el('span', { class: 'chip chip-small' }, DOMAIN[n.domain] || n.domain),
        el('span', { class: 'muted small summary-counts' }, `关键词 ${n.keywords.length} · 同义词 ${n.synonyms.length} · 例句 ${n.examples.length} · 反例 ${(n.counter_examples || []).length}`)),
      el('p', null, n.description),
      el('p', { class: 'hint' }, `阈值 ${fix3(n.threshold_in_use)}${n.threshold === null || n.threshold === undefined ? '（默认）' : ''} · 定义于 ${n.file}`),
      chipList('关键词', n.keywords, q),
      chipList('同义词', n.synonyms, q),
      chipList('排除词', n.exclusions, q, 'chip-excl'),
      (n.pack_details || []).length ? el('div', { class: 'lib-field' }, el('span', { class: 'lib-field-title' }, `解决方案包（${n.pack_details.length}）`),
        el('ul', { class: 'pack-list' }, n.pack_details.map(packLink))) : null,
      textList('例句', n.examples, q),
      textList('反例（看起来像、其实不是这个需求）', n.counter_examples, q)))
      : [el('p', { class: 'muted' }, '没有匹配的需求。')]));

    $('#lib-actions').replaceChildren(...(actions.length ? actions.map((a) => el('details', { class: 'lib-item', dataset: { id: a.id }, open },
      el('summary', null, el('strong', null, a.name), ' ', el('code', { class: 'muted small' }, a.id), ' ',
        el('span', { class: `badge tier-${a.tier}` }, TIER[a.tier] || a.tier),
        el('span', { class: 'muted small summary-counts' }, `关键词 ${a.keywords.length} · 句式 ${a.patterns.length}`)),
      el('p', null, a.description),
      a.threshold !== null && a.threshold !== undefined ? el('p', { class: 'hint' }, `阈值 ${fix3(a.threshold)}`) : null,
      chipList('关键词', a.keywords, q),
      textList('句式（正则）', a.patterns, q, true),
      textList('例句', a.examples, q)))
      : [el('p', { class: 'muted' }, dom ? '销售动作不分领域：清除领域筛选后显示。' : '没有匹配的动作。')]));

    $('#lib-packs').replaceChildren(...(packs.length ? [el('ul', { class: 'pack-list pack-grid' }, packs.map((p) => {
      const li = packLink(p);
      const users = packUsers.get(p.id) || [];
      if (users.length) li.appendChild(el('div', { class: 'small' }, '用于：', users.map((n) => n.name).join('、')));
      li.dataset.id = p.id;
      return li;
    }))] : [el('p', { class: 'muted' }, '没有匹配的解决方案包。')]));
  }
  async function reloadLibrary() {
    const out = $('#reload-result');
    const box = $('#lib-error');
    clearError(box);
    out.replaceChildren(el('p', { class: 'status working' }, '正在校验并重新加载…'));
    $('#reload-btn').disabled = true;
    try {
      const r = await api('POST', '/v1/library/reload');
      out.replaceChildren(el('div', { class: 'ok-box', id: 'reload-ok' },
        el('strong', null, r.changed ? '✓ 已重新加载，需求库已更新' : '✓ 已重新加载，内容没有变化'),
        el('p', null, '版本 ', el('code', { class: 'new-version' }, r.version), r.changed ? ['（之前 ', el('code', null, r.previous_version), '）'] : null),
        el('p', { class: 'muted small' }, `需求 ${r.needs} · 动作 ${r.actions} · 解决方案包 ${r.packs}`)));
      await loadLibrary();
    } catch (e) {
      out.replaceChildren();
      if (e.code === 'invalid_library') {
        box.hidden = false;
        box.replaceChildren(
          el('strong', { class: 'err-title' }, `需求库校验未通过（HTTP ${e.status}）：当前的需求库继续提供服务`),
          el('p', { class: 'err-msg' }, el('span', { class: 'muted' }, '服务器说明：'), e.message),
          el('p', { class: 'err-hint' }, `请修正下面 ${(e.problems || []).length} 个问题（文件:行号）后再重新加载：`),
          problemList(e.problems || []));
      } else {
        showError(box, e, '重新加载失败', reloadLibrary);
      }
    } finally {
      $('#reload-btn').disabled = false;
    }
  }
  function initLibrary() {
    const rerender = debounce(renderLibrary, 120);
    $('#lib-search').addEventListener('input', rerender);
    $('#lib-domain').addEventListener('change', renderLibrary);
    $('#reload-btn').addEventListener('click', reloadLibrary);
    viewInit.library = loadLibrary;
  }

  // ------------------------------------------------------------------ 评估
  let report = null;
  const sortState = { needs: { key: 'label', dir: 1 }, actions: { key: 'label', dir: 1 } };
  const COLS = [
    { key: 'label', name: '标签', get: (r) => r.label, str: true },
    { key: 'support', name: '支持数', get: (r) => r.support },
    { key: 'precision', name: '精确率', get: (r) => r.precision, fmt: fix3 },
    { key: 'recall', name: '召回率', get: (r) => r.recall, fmt: fix3 },
    { key: 'f1', name: 'F1', get: (r) => r.f1, fmt: fix3 },
    { key: 'tp', name: 'TP', get: (r) => r.counts.tp },
    { key: 'fp', name: 'FP', get: (r) => r.counts.fp },
    { key: 'fn', name: 'FN', get: (r) => r.counts.fn },
  ];
  const seenLabel = (l) => l.support > 0 || l.counts.fp > 0;
  const chartLabels = () => ((report && report.needs.labels) || []).filter(seenLabel);
  function f1Class(f) { return f >= 0.85 ? 'good' : f >= 0.6 ? 'fair' : 'poor'; }
  function renderSortable(table, labels, which) {
    const st = sortState[which];
    const col = COLS.find((c) => c.key === st.key) || COLS[0];
    const rows = labels.slice().sort((a, b) => {
      const x = col.get(a); const y = col.get(b);
      const c = col.str ? String(x).localeCompare(String(y)) : (Number(x) - Number(y));
      return (c || a.label.localeCompare(b.label)) * st.dir;
    });
    const thead = el('thead', null, el('tr', null, COLS.map((c) => {
      const sorted = c.key === st.key;
      return el('th', { scope: 'col', 'aria-sort': sorted ? (st.dir > 0 ? 'ascending' : 'descending') : 'none', dataset: { key: c.key }, class: c.str ? '' : 'num' },
        el('button', { type: 'button', class: 'th-btn', onclick: () => {
          if (st.key === c.key) st.dir = -st.dir; else { st.key = c.key; st.dir = c.str ? 1 : -1; }
          renderSortable(table, labels, which);
        } }, c.name, el('span', { class: 'sort-ind', 'aria-hidden': 'true' }, sorted ? (st.dir > 0 ? '▲' : '▼') : '↕')));
    })));
    const tbody = el('tbody', null, rows.map((r) => el('tr', {
      dataset: { label: r.label }, class: `row-${f1Class(r.f1)}`, tabindex: '0', title: '点击筛选此标签的错例',
      onclick: () => filterMisses(r.label),
      onkeydown: (e) => { if (e.key === 'Enter') filterMisses(r.label); },
    }, COLS.map((c) => {
      if (c.key === 'label') return el('td', { class: 'label-cell' }, labelName(r.label) ? [el('span', null, labelName(r.label)), el('br'), el('code', { class: 'muted small' }, r.label)] : el('code', null, r.label));
      const v = c.get(r);
      return el('td', { class: `num ${c.key === 'f1' ? `f1-${f1Class(v)}` : ''}`, dataset: { key: c.key, value: String(v) } }, c.fmt ? c.fmt(v) : v);
    }))));
    table.replaceChildren(thead, tbody);
  }
  function renderChart(labels) {
    const box = $('#eval-chart');
    if (!labels || !labels.length) { box.replaceChildren(el('p', { class: 'muted' }, '没有数据')); return; }
    const rows = labels.slice().sort((a, b) => a.f1 - b.f1 || a.label.localeCompare(b.label));
    const W = Math.max(280, Math.floor(box.clientWidth || 600));
    const rowH = 22; const top = 20; const bottom = 8;
    const labW = Math.min(180, Math.round(W * 0.38));
    const right = 46;
    const plotW = W - labW - right;
    const H = top + rows.length * rowH + bottom;
    const x = (v) => labW + v * plotW;
    const svg = el('svg', { width: String(W), height: String(H), viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': '各需求 F1 条形图', class: 'bar-chart', xmlns: 'http://www.w3.org/2000/svg' });
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      svg.appendChild(el('line', { x1: x(t), x2: x(t), y1: top - 4, y2: H - bottom, class: 'grid' }));
      svg.appendChild(el('text', { x: x(t), y: top - 8, 'text-anchor': t === 0 ? 'start' : t === 1 ? 'end' : 'middle', class: 'axis' }, t.toFixed(2)));
    }
    const maxChars = Math.max(4, Math.floor((labW - 8) / 13));
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const name = labelName(r.label) || r.label;
      const short = chars(name).length > maxChars ? `${chars(name).slice(0, maxChars - 1).join('')}…` : name;
      const g = el('g', { class: 'bar-row', dataset: { label: r.label } },
        el('title', null, `${name}（${r.label}）F1 ${fix3(r.f1)} · P ${fix3(r.precision)} · R ${fix3(r.recall)} · 支持数 ${r.support}`),
        el('text', { x: labW - 6, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'bar-label' }, short),
        el('rect', { x: labW, y: y + 4, width: Math.max(0, r.f1 * plotW), height: rowH - 8, rx: 2, class: `bar-rect f1-${f1Class(r.f1)}` }),
        r.f1 * plotW > 40
          ? el('text', { x: x(r.f1) - 4, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'bar-val bar-val-in' }, `${r.f1.toFixed(2)}`)
          : el('text', { x: x(r.f1) + 4, y: y + rowH / 2 + 4, class: 'bar-val' }, `${r.f1.toFixed(2)}`),
        el('text', { x: W - 2, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'bar-support' }, `n=${r.support}`));
      svg.appendChild(g);
    });
    box.replaceChildren(svg);
  }
  function chip(text, cls, title) { return el('span', { class: `chip chip-small ${cls || ''}`, title }, text); }
  function labelChip(id, cls) {
    const n = labelName(id);
    return chip(n ? `${n}` : id, cls, id);
  }
  let missFilter = '';
  const MISS_PAGE = 20;
  let missShown = MISS_PAGE;
  function filterMisses(label) {
    missFilter = label || '';
    missShown = MISS_PAGE;
    $('#miss-filter').value = missFilter;
    renderMisses();
    if (label) $('#eval-misses').scrollIntoView({ block: 'start', behavior: 'smooth' });
  }
  function highlightTerms(text, terms) {
    const cps = chars(text);
    const marks = new Array(cps.length).fill(false);
    const s = cps.join('');
    for (const t of terms) {
      if (!t) continue;
      let i = s.indexOf(t);
      while (i >= 0) {
        const start = chars(s.slice(0, i)).length;
        const len = chars(t).length;
        for (let k = start; k < start + len; k++) marks[k] = true;
        i = s.indexOf(t, i + t.length);
      }
    }
    const out = [];
    let i = 0;
    while (i < cps.length) {
      let j = i;
      while (j < cps.length && marks[j] === marks[i]) j++;
      const piece = cps.slice(i, j).join('');
      out.push(marks[i] ? el('mark', { class: 'extra-ev' }, piece) : document.createTextNode(piece));
      i = j;
    }
    return out;
  }
  function renderMisses() {
    const all = (report && report.misses) || [];
    const q = $('#miss-search').value.trim().toLowerCase();
    const list = all.filter((m) => (!missFilter || [m.missed_needs, m.extra_needs, m.missed_actions, m.extra_actions].some((xs) => xs.includes(missFilter)))
      && (!q || m.text.toLowerCase().includes(q) || m.id.toLowerCase().includes(q)));
    $('#eval-misses-count').textContent = list.length === all.length ? String(all.length) : `${list.length}/${all.length}`;
    const shown = list.slice(0, missShown);
    const nodes = shown.map((m) => {
      const evTerms = [];
      const evRows = [];
      for (const [label, evs] of Object.entries(m.extra_evidence || {})) {
        for (const e of evs) {
          const k = e.indexOf(':');
          const kind = k > 0 ? e.slice(0, k) : '';
          const words = k > 0 ? e.slice(k + 1) : e;
          evTerms.push(words);
          evRows.push(el('li', null, labelChip(label, 'chip-extra'), ' ', el('span', { class: 'kind' }, EVAL_KIND[kind] || kind || '证据'), ' ', el('span', { class: 'ev-text' }, `「${words}」`)));
        }
      }
      const rows = [];
      const line = (title, ids, cls) => (ids && ids.length ? rows.push(el('div', { class: 'miss-row' }, el('span', { class: 'miss-k' }, title), ids.map((id) => labelChip(id, cls)))) : 0);
      line('漏标需求', m.missed_needs, 'chip-missed');
      line('多标需求', m.extra_needs, 'chip-extra');
      line('漏标动作', m.missed_actions, 'chip-missed');
      line('多标动作', m.extra_actions, 'chip-extra');
      if (Array.isArray(m.vague)) rows.push(el('div', { class: 'miss-row' }, el('span', { class: 'miss-k' }, '空泛标记'), `应为「${m.vague[0] ? '空泛' : '具体'}」，实际判为「${m.vague[1] ? '空泛' : '具体'}」`));
      return el('article', { class: 'item miss', dataset: { id: m.id } },
        el('div', { class: 'item-head' }, el('code', null, m.id)),
        el('p', { class: 'miss-text' }, highlightTerms(m.text, evTerms)),
        rows,
        evRows.length ? el('div', { class: 'miss-row' }, el('span', { class: 'miss-k' }, '多标的证据'), el('ul', { class: 'evidence' }, evRows)) : null);
    });
    if (list.length > shown.length) {
      nodes.push(el('button', { type: 'button', class: 'btn', id: 'miss-more', onclick: () => { missShown += MISS_PAGE * 2; renderMisses(); } },
        `再显示 ${Math.min(MISS_PAGE * 2, list.length - shown.length)} 条（还有 ${list.length - shown.length} 条）`));
    }
    if (!list.length) nodes.push(el('p', { class: 'muted' }, all.length ? '没有符合筛选条件的错例。' : '没有错例：每条备忘录都标对了。'));
    $('#eval-misses').replaceChildren(...nodes);
  }
  function renderReport(r) {
    report = r;
    $('#eval-report').hidden = false;
    $('#eval-meta').textContent = `${r.memos} 条备忘录 · ${r.mode === 'keyword' ? '仅关键词' : '混合'} · 需求库 ${r.library_version}`;
    const n = r.needs; const a = r.actions; const v = r.vague || {}; const lat = r.latency_ms || {};
    const group = (title, cards) => el('div', { class: 'metric-group' }, el('div', { class: 'metric-group-title' }, title), el('div', { class: 'metrics' }, cards));
    $('#eval-summary').replaceChildren(
      group('需求', [metric('micro-F1', fix3(n.micro_f1)), metric('macro-F1', fix3(n.macro_f1)), metric('精确率', fix3(n.micro_precision)), metric('召回率', fix3(n.micro_recall))]),
      group('销售动作', [metric('micro-F1', fix3(a.micro_f1)), metric('macro-F1', fix3(a.macro_f1)), metric('精确率', fix3(a.micro_precision)), metric('召回率', fix3(a.micro_recall))]),
      group('空泛标记', [metric('精确率', fix3(v.precision)), metric('召回率', fix3(v.recall)), metric('F1', fix3(v.f1)),
        metric('TP/FP/FN', v.counts ? `${v.counts.tp}/${v.counts.fp}/${v.counts.fn}` : '—')]),
      group('其他', [metric('备忘录', r.memos), metric('错例', (r.misses || []).length),
        metric('延迟 p50', ms(lat.p50)), metric('延迟 p95', ms(lat.p95))]));
    $('#eval-summary').dataset.needsMicroF1 = String(n.micro_f1);
    // labels the set never mentions and the tagger never produced say nothing (P = R = 1 by convention)
    const needLabels = (n.labels || []).filter(seenLabel);
    const actionLabels = (a.labels || []).filter(seenLabel);
    const unseen = (n.labels || []).length - needLabels.length;
    $('#eval-unseen').textContent = unseen ? `另有 ${unseen} 个需求在这个评估集里既没有标注也没有被标出，未列出。` : '';
    renderSortable($('#eval-needs-table'), needLabels, 'needs');
    renderSortable($('#eval-actions-table'), actionLabels, 'actions');
    renderChart(needLabels);
    // confusions
    const cp = r.confused_pairs || [];
    $('#eval-confused').replaceChildren(cp.length ? el('div', { class: 'table-wrap' }, el('table', { class: 'data', id: 'confused-table' },
      el('thead', null, el('tr', null, el('th', null, '漏标的需求'), el('th', null, '误标为'), el('th', { class: 'num' }, '次数'))),
      el('tbody', null, cp.map(([missed, instead, count]) => el('tr', null,
        el('td', null, labelChip(missed, 'chip-missed')), el('td', null, labelChip(instead, 'chip-extra')), el('td', { class: 'num' }, count))))))
      : el('p', { class: 'muted' }, '没有混淆对。'));
    const vio = [
      ['被否定却仍被标注的需求', r.negated_needs_tagged],
      ['只是计划却被算作已完成的动作', r.planned_actions_counted],
      ['明确没做却被算作已完成的动作', r.negated_actions_counted],
    ];
    $('#eval-violations').replaceChildren(...vio.map(([title, list]) => el('div', { class: 'lib-field' },
      el('span', { class: 'lib-field-title' }, `${title}（${(list || []).length}）`),
      (list || []).length ? el('ul', { class: 'lib-list' }, list.map((x) => el('li', null, el('code', null, x.id), ' ', labelChip(x.label, 'chip-extra'))))
        : el('span', { class: 'muted small' }, ' 无'))));
    const cats = r.categories || [];
    $('#eval-categories').replaceChildren(
      el('thead', null, el('tr', null, el('th', null, '类别'), el('th', { class: 'num' }, '条数'), el('th', { class: 'num' }, '需求 F1'), el('th', { class: 'num' }, '动作 F1'), el('th', { class: 'num' }, '全对'))),
      el('tbody', null, cats.map((c) => el('tr', null, el('td', null, CATEGORY[c.category] || c.category, el('br'), el('code', { class: 'muted small' }, c.category)),
        el('td', { class: 'num' }, c.memos), el('td', { class: `num f1-${f1Class(c.needs_micro_f1)}` }, fix3(c.needs_micro_f1)),
        el('td', { class: `num f1-${f1Class(c.actions_micro_f1)}` }, fix3(c.actions_micro_f1)), el('td', { class: 'num' }, `${c.exact}/${c.memos}`)))));
    // miss filter options
    const labels = uniq((r.misses || []).flatMap((m) => [...m.missed_needs, ...m.extra_needs, ...m.missed_actions, ...m.extra_actions])).sort();
    $('#miss-filter').replaceChildren(el('option', { value: '' }, '全部标签'), ...labels.map((l) => el('option', { value: l }, labelName(l) ? `${labelName(l)}（${l}）` : l)));
    missFilter = '';
    missShown = MISS_PAGE;
    renderMisses();
  }
  async function runEval() {
    const box = $('#eval-error');
    clearError(box);
    const src = (document.querySelector('input[name=eval-src]:checked') || {}).value;
    const body = { mode: (document.querySelector('input[name=eval-mode]:checked') || {}).value || 'hybrid' };
    if (src === 'file') {
      const f = $('#eval-file').files[0];
      if (!f) { showMessage(box, '请先选择 JSONL 文件', '或者改用「内置开发集」。'); return; }
      const text = await f.text();
      if (!text.trim()) { showMessage(box, '文件是空的', `${f.name} 没有内容。`); return; }
      body.jsonl = text;
    }
    const btn = $('#eval-run');
    btn.disabled = true;
    const t0 = performance.now();
    const status = $('#eval-status');
    status.classList.add('working');
    const tick = () => { status.textContent = `评估中… ${((performance.now() - t0) / 1000).toFixed(0)} 秒（通常需要几秒）`; };
    tick();
    const h = setInterval(tick, 500);
    try {
      await loadCatalog().catch(() => null); // names for labels; not essential
      const r = await api('POST', '/v1/eval', body);
      status.textContent = `完成：${r.memos} 条，用时 ${((performance.now() - t0) / 1000).toFixed(1)} 秒`;
      renderReport(r);
    } catch (e) {
      status.textContent = '';
      showError(box, e, '评估失败', runEval);
    } finally {
      clearInterval(h);
      status.classList.remove('working');
      btn.disabled = false;
    }
  }
  function initEval() {
    for (const r of $$('input[name=eval-src]')) r.addEventListener('change', () => { $('#eval-file-row').hidden = r.value !== 'file' || !r.checked; });
    $('#eval-file').addEventListener('change', async () => {
      const f = $('#eval-file').files[0];
      if (!f) { $('#eval-file-info').textContent = ''; return; }
      const lines = (await f.text()).split('\n').filter((l) => l.trim()).length;
      $('#eval-file-info').textContent = `${f.name}：${lines} 行，${(f.size / 1024).toFixed(1)} KB`;
    });
    $('#eval-run').addEventListener('click', runEval);
    $('#miss-filter').addEventListener('change', () => { missFilter = $('#miss-filter').value; missShown = MISS_PAGE; renderMisses(); });
    $('#miss-search').addEventListener('input', debounce(() => { missShown = MISS_PAGE; renderMisses(); }, 150));
    let lastW = 0;
    window.addEventListener('resize', debounce(() => {
      const w = $('#eval-chart').clientWidth;
      if (report && !$('#view-eval').hidden && w !== lastW) { lastW = w; renderChart(chartLabels()); }
    }, 150));
  }

  // ------------------------------------------------------------------ 备忘录 (history, review, blind spots)
  const hist = { next: null, items: [], current: null };
  function histQuery() {
    const p = new URLSearchParams();
    const put = (k, v) => { if (v && String(v).trim()) p.set(k, String(v).trim()); };
    put('q', $('#hist-q').value);
    put('rep_id', $('#hist-rep').value);
    put('customer_id', $('#hist-customer').value);
    put('team', $('#hist-team').value);
    put('domain', $('#hist-domain').value);
    put('need', $('#hist-need').value);
    put('from', $('#hist-from').value);
    put('to', $('#hist-to').value);
    const flag = $('#hist-flag').value;
    if (flag) { const [k, v] = flag.split('='); p.set(k, v); }
    return p;
  }
  function tagChips(ids, cls) {
    return el('span', { class: 'chips' }, (ids || []).map((id) => chip(labelName(id) || id, cls, id)));
  }
  function fmtTime(s) { return s ? String(s).slice(0, 16).replace('T', ' ') : '—'; }
  function renderHistRows() {
    const t = $('#hist-table');
    const head = el('thead', null, el('tr', null, ['时间', '代表', '客户', '备忘录', '需求', '动作', ''].map((h) => el('th', null, h))));
    const body = el('tbody', null, hist.items.map((m) => el('tr', {
      class: `hist-row${hist.current === m.memo_id ? ' selected' : ''}`, tabindex: '0', dataset: { id: m.memo_id },
      onclick: () => openMemo(m.memo_id),
      onkeydown: (e) => { if (e.key === 'Enter') openMemo(m.memo_id); },
    },
    el('td', { class: 'nowrap' }, fmtTime(m.recorded_at)),
    el('td', null, m.rep_id || '—'),
    el('td', null, m.customer_id || '—'),
    el('td', { class: 'memo-cell' }, clip(m.text, 60)),
    el('td', null, tagChips(m.labels ? m.labels.needs : m.needs, 'need')),
    el('td', null, tagChips(m.labels ? m.labels.actions : m.actions, 'action')),
    el('td', { class: 'nowrap' },
      m.vague ? chip('含糊', 'chip-warn') : null,
      m.high_value ? chip('高价值', 'chip-good') : null,
      m.reviewed ? chip('已复核', 'chip-reviewed') : null))));
    t.replaceChildren(head, body);
    $('#hist-count').textContent = `${hist.items.length}${hist.next ? '+' : ''}`;
    $('#hist-more').hidden = !hist.next;
  }
  async function loadHistory(more) {
    clearError($('#hist-error'));
    const p = histQuery();
    if (more && hist.next) p.set('cursor', hist.next);
    try {
      await loadCatalog().catch(() => null);
      const page = await api('GET', `/v1/memos?${p}`);
      hist.items = more ? hist.items.concat(page.items) : page.items;
      hist.next = page.next || null;
      renderHistRows();
      if (!hist.items.length) $('#hist-table').replaceChildren(el('tbody', null, el('tr', null, el('td', { class: 'muted' }, '没有符合条件的备忘录'))));
    } catch (e) {
      showError($('#hist-error'), e, '无法读取备忘录');
    }
  }
  async function openMemo(id) {
    clearError($('#review-error'));
    hist.current = id;
    renderHistRows();
    try {
      renderMemo(await api('GET', `/v1/memos/${encodeURIComponent(id)}`));
    } catch (e) {
      $('#memo-card').hidden = false;
      showError($('#review-error'), e, '无法打开备忘录');
    }
  }
  async function review(id, marks) {
    clearError($('#review-error'));
    try {
      const m = await api('POST', `/v1/memos/${encodeURIComponent(id)}/review`, { marks });
      renderMemo(m);
      const i = hist.items.findIndex((x) => x.memo_id === id);
      if (i >= 0) { hist.items[i] = Object.assign({}, m, { result: undefined }); renderHistRows(); }
    } catch (e) {
      showError($('#review-error'), e, '复核没有保存');
    }
  }
  function lastVerdict(m, kind, id) {
    let v = null;
    for (const r of m.reviews || []) if (r.kind === kind && r.id === id) v = r.verdict;
    return v;
  }
  function reviewList(m, kind) {
    const engine = kind === 'need' ? m.needs : m.actions;
    const added = (m.labels ? m.labels[kind === 'need' ? 'needs' : 'actions'] : []).filter((x) => !engine.includes(x));
    const row = (id, fromEngine) => {
      const v = lastVerdict(m, kind, id);
      const state = v === 'reject' ? 'rejected' : v ? 'confirmed' : 'open';
      return el('li', { class: `review-item ${state}`, dataset: { kind, id } },
        el('span', { class: 'review-name' }, `${labelName(id) || id}`, el('span', { class: 'muted small' }, ` ${id}`)),
        el('span', { class: 'review-state small' }, v === 'reject' ? '已否定' : v === 'add' ? '已补充' : v === 'confirm' ? '已确认' : '待复核'),
        fromEngine ? el('button', { type: 'button', class: 'btn btn-small confirm', disabled: v === 'confirm', onclick: () => review(m.memo_id, [{ kind, id, verdict: 'confirm' }]) }, '✓ 对') : null,
        fromEngine ? el('button', { type: 'button', class: 'btn btn-small reject', disabled: v === 'reject', onclick: () => review(m.memo_id, [{ kind, id, verdict: 'reject' }]) }, '✗ 错') : null);
    };
    const options = kind === 'need' ? (catalog.needs || []) : (catalog.actions || []);
    const pick = el('select', { class: `add-${kind}`, 'aria-label': kind === 'need' ? '补充漏掉的需求' : '补充漏掉的动作' },
      el('option', { value: '' }, kind === 'need' ? '补充漏掉的需求…' : '补充漏掉的动作…'),
      options.filter((o) => !engine.includes(o.id) && !added.includes(o.id)).map((o) => el('option', { value: o.id }, `${o.name}（${o.id}）`)));
    const add = el('button', { type: 'button', class: `btn btn-small add-${kind}-btn`, onclick: () => { if (pick.value) review(m.memo_id, [{ kind, id: pick.value, verdict: 'add' }]); } }, '+ 补充');
    return el('div', { class: 'review-block' },
      el('h3', { class: 'sub-title' }, kind === 'need' ? '客户需求' : '销售动作'),
      el('ul', { class: `review-list review-${kind}s` }, engine.map((id) => row(id, true)), added.map((id) => row(id, false))),
      el('div', { class: 'row' }, pick, add));
  }
  function renderMemo(m) {
    $('#memo-card').hidden = false;
    $('#memo-meta').textContent = [fmtTime(m.recorded_at), m.rep_id, m.customer_id, m.team, DOMAIN[m.domain] || m.domain].filter(Boolean).join(' · ');
    const box = $('#memo-detail');
    box.dataset.id = m.memo_id;
    box.replaceChildren(
      el('p', { class: 'memo-text', lang: 'zh-CN' }, m.text),
      el('div', { class: 'chips' },
        m.vague ? chip('含糊', 'chip-warn') : null,
        m.high_value ? chip('高价值动作', 'chip-good') : null,
        m.reviewed ? chip('已复核', 'chip-reviewed') : chip('未复核', '')),
      reviewList(m, 'need'),
      reviewList(m, 'action'),
      (m.reviews || []).length ? el('details', { class: 'reviews-log' }, el('summary', null, `复核记录（${m.reviews.length}）`),
        el('ul', null, m.reviews.map((r) => el('li', { class: 'small' }, `${fmtTime(r.at)} ${r.reviewer}：${r.verdict} ${r.kind} ${r.id}`)))) : null,
      el('p', { class: 'hint' }, `memo_id ${m.memo_id} · 需求库 ${m.library_version}`));
  }
  async function findBlindSpots() {
    const status = $('#blind-status');
    status.textContent = '分析中…';
    const p = histQuery();
    for (const k of ['q', 'need', 'vague', 'no_need', 'high_value', 'reviewed', 'customer_id']) p.delete(k);
    try {
      const b = await api('GET', `/v1/memos/blind-spots?${p}`);
      status.textContent = `读了最新的 ${b.scanned} 条没有需求的具体备忘录`;
      const list = $('#blind-list');
      if (!b.groups.length) { list.replaceChildren(el('p', { class: 'muted' }, '没有盲区：每条具体的备忘录都打上了需求')); return; }
      list.replaceChildren(...b.groups.map((g) => el('details', { class: 'blind-group', dataset: { word: g.word } },
        el('summary', null, el('strong', null, g.word || '其他'), ` · ${g.memos} 条`, g.also.length ? el('span', { class: 'muted small' }, ` 常与：${g.also.join('、')}`) : null),
        el('ul', null, g.examples.map((x) => el('li', null,
          el('a', { href: '#history', onclick: (e) => { e.preventDefault(); openMemo(x.memo_id); } }, fmtTime(x.recorded_at)), ' ', clip(x.text, 80)))))));
    } catch (e) {
      status.textContent = '';
      showError($('#hist-error'), e, '无法分析盲区');
    }
  }
  async function runRetag() {
    const status = $('#retag-status');
    status.textContent = '重新打标签中…';
    clearError($('#hist-error'));
    try {
      const r = await api('POST', '/v1/memos/retag', { limit: 300 });
      status.textContent = `${r.memos} 条备忘录，${r.changed} 条结果会变，其中已复核 ${r.reviewed} 条`;
      const score = (name, s) => el('tr', null, el('td', null, name),
        el('td', null, `${fix3(s.before.precision)} → ${fix3(s.after.precision)}`),
        el('td', null, `${fix3(s.before.recall)} → ${fix3(s.after.recall)}`),
        el('td', null, `${fix3(s.before.f1)} → ${fix3(s.after.f1)}`));
      const list = (title, items, cls) => el('div', { class: `retag-list ${cls}` },
        el('h3', { class: 'sub-title' }, `${title}（${items.length}）`),
        el('ul', null, items.slice(0, 50).map((c) => el('li', { dataset: { id: c.memo_id } },
          el('a', { href: '#history', onclick: (e) => { e.preventDefault(); openMemo(c.memo_id); } }, fmtTime(c.recorded_at)), ' ',
          clip(c.text, 50), ' ',
          c.added.map((t) => chip(`+${labelName(t.split(':')[1]) || t}`, 'chip-good', t)),
          c.removed.map((t) => chip(`−${labelName(t.split(':')[1]) || t}`, 'chip-missed', t))))));
      $('#retag-result').replaceChildren(
        el('p', { class: 'hint' }, `候选需求库 ${r.candidate_version}；已存结果来自 ${Object.keys(r.stored_versions).join('、')}`),
        el('div', { class: 'table-wrap' }, el('table', { class: 'data retag-scores' },
          el('thead', null, el('tr', null, ['已复核备忘录上', '精确率', '召回率', 'F1'].map((h) => el('th', null, h)))),
          el('tbody', null, score('需求', r.needs), score('动作', r.actions)))),
        list('多对了', r.gained, 'gained'), list('多错了', r.lost, 'lost'), list('其他变化（未复核或对错数不变）', r.other_changes, 'other'));
    } catch (e) {
      status.textContent = '';
      showError($('#hist-error'), e, '重新打标签失败');
    }
  }
  function initHistory() {
    $('#retag-run').addEventListener('click', runRetag);
    for (const [id, name] of Object.entries(DOMAIN)) $('#hist-domain').appendChild(el('option', { value: id }, name));
    $('#hist-form').addEventListener('submit', (e) => { e.preventDefault(); loadHistory(false); });
    $('#hist-more').addEventListener('click', () => loadHistory(true));
    $('#blind-run').addEventListener('click', findBlindSpots);
    viewInit.history = () => {
      loadCatalog().then(() => {
        const sel = $('#hist-need');
        if (sel.options.length <= 1) for (const n of catalog.needs) sel.appendChild(el('option', { value: n.id }, `${n.name}（${n.id}）`));
      }).catch(() => null);
      loadHistory(false);
    };
  }

  // ------------------------------------------------------------------ 经理看板 (manager's numbers)
  let sales = null;
  function metricsQuery() {
    const p = new URLSearchParams({ group_by: $('#met-group').value, period: $('#met-period').value });
    if ($('#met-from').value) p.set('from', $('#met-from').value);
    if ($('#met-to').value) p.set('to', $('#met-to').value);
    if ($('#met-days').value) p.set('days', $('#met-days').value);
    return p;
  }
  const GROUP = { rep: '代表', team: '团队', domain: '行业' };
  const TREND = { new: '新出现', rising: '↑ 上升', steady: '→ 持平', falling: '↓ 下降' };
  const groupName = (g, by) => (g === null || g === undefined ? '（未填）' : by === 'domain' ? (DOMAIN[g] || g) : g);
  async function loadMetrics() {
    clearError($('#met-error'));
    try {
      await loadCatalog().catch(() => null);
      sales = await api('GET', `/v1/metrics/sales?${metricsQuery()}`);
      renderMetrics();
    } catch (e) {
      $('#met-report').hidden = true;
      showError($('#met-error'), e, '无法读取经理看板');
    }
  }
  function perPeriod(rows) {
    const by = new Map();
    for (const r of rows) {
      const t = by.get(r.period) || { period: r.period, memos: 0, actions: 0, hv: 0, vague: 0, need: 0 };
      t.memos += r.memos; t.actions += r.actions; t.hv += r.high_value_actions; t.vague += r.vague; t.need += r.with_need;
      by.set(r.period, t);
    }
    return Array.from(by.values()).sort((a, b) => a.period.localeCompare(b.period));
  }
  function trendChart(totals) {
    const box = $('#met-chart');
    if (!totals.length) { box.replaceChildren(el('p', { class: 'muted' }, '这个时间段没有备忘录')); return; }
    const W = Math.max(300, Math.floor(box.clientWidth || 700)); const H = 240;
    const L = 44; const R = 44; const T = 16; const B = 40;
    const pw = W - L - R; const ph = H - T - B;
    const maxMemos = Math.max(1, ...totals.map((t) => t.memos));
    const step = pw / totals.length;
    const x = (i) => L + step * i + step / 2;
    const yShare = (v) => T + ph * (1 - v);
    const svg = el('svg', { width: String(W), height: String(H), viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': '各周期备忘录数与占比', class: 'trend-chart', xmlns: 'http://www.w3.org/2000/svg' });
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      svg.appendChild(el('line', { x1: L, x2: W - R, y1: yShare(v), y2: yShare(v), class: 'grid' }));
      svg.appendChild(el('text', { x: W - R + 4, y: yShare(v) + 4, class: 'axis' }, `${Math.round(v * 100)}%`));
    }
    svg.appendChild(el('text', { x: L - 4, y: T + 4, 'text-anchor': 'end', class: 'axis' }, String(maxMemos)));
    svg.appendChild(el('line', { x1: L, x2: W - R, y1: yShare(0.28), y2: yShare(0.28), class: 'target' }, el('title', null, '高价值动作占比目标 28%')));
    totals.forEach((t, i) => {
      const h = ph * t.memos / maxMemos;
      svg.appendChild(el('rect', { x: x(i) - step * 0.3, y: T + ph - h, width: step * 0.6, height: h, class: 'memo-bar', dataset: { period: t.period } },
        el('title', null, `${t.period}：${t.memos} 条备忘录`)));
      if (totals.length <= 16 || i % Math.ceil(totals.length / 12) === 0) {
        svg.appendChild(el('text', { x: x(i), y: H - B + 16, 'text-anchor': 'middle', class: 'axis' }, t.period.slice(5)));
      }
    });
    const series = [
      ['hv', '高价值动作占比', (t) => (t.actions ? t.hv / t.actions : null)],
      ['vague', '含糊占比', (t) => (t.memos ? t.vague / t.memos : null)],
      ['need', '需求捕获率', (t) => (t.memos ? t.need / t.memos : null)],
    ];
    for (const [cls, name, f] of series) {
      const pts = totals.map((t, i) => [i, f(t)]).filter(([, v]) => v !== null);
      if (!pts.length) continue;
      svg.appendChild(el('path', { d: pts.map(([i, v], k) => `${k ? 'L' : 'M'}${x(i).toFixed(1)},${yShare(v).toFixed(1)}`).join(' '), class: `line line-${cls}` }, el('title', null, name)));
      for (const [i, v] of pts) svg.appendChild(el('rect', { x: x(i) - 3, y: yShare(v) - 3, width: 6, height: 6, class: `dot dot-${cls}` }, el('title', null, `${totals[i].period} ${name} ${pct(v)}`)));
    }
    const legend = el('div', { class: 'legend' },
      el('span', { class: 'key key-memos' }, '备忘录数（柱）'), el('span', { class: 'key key-hv' }, '高价值动作占比'),
      el('span', { class: 'key key-vague' }, '含糊占比'), el('span', { class: 'key key-need' }, '需求捕获率'), el('span', { class: 'key key-target' }, '目标 28%'));
    box.replaceChildren(svg, legend);
  }
  function groupBars(rows, by) {
    const box = $('#met-bars');
    const last = rows.reduce((m, r) => (r.period > m ? r.period : m), '');
    const list = rows.filter((r) => r.period === last && r.actions > 0)
      .sort((a, b) => (b.high_value_share - a.high_value_share) || String(a.group).localeCompare(String(b.group))).slice(0, 30);
    if (!list.length) { box.replaceChildren(el('p', { class: 'muted' }, '最近一个周期没有汇报动作')); return; }
    const W = Math.max(300, Math.floor(box.clientWidth || 700)); const rowH = 22; const top = 8; const labW = 150; const right = 60;
    const H = top + list.length * rowH + 8; const pw = W - labW - right;
    const svg = el('svg', { width: String(W), height: String(H), viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': '各组高价值动作占比', class: 'bar-chart group-bars', xmlns: 'http://www.w3.org/2000/svg' });
    svg.appendChild(el('line', { x1: labW + pw * 0.28, x2: labW + pw * 0.28, y1: 0, y2: H, class: 'target' }, el('title', null, '目标 28%')));
    list.forEach((r, i) => {
      const y = top + i * rowH; const v = r.high_value_share || 0;
      svg.appendChild(el('g', { class: 'bar-row', dataset: { group: r.group ?? '' } },
        el('title', null, `${groupName(r.group, by)}：${r.high_value_actions}/${r.actions} = ${pct(v)}`),
        el('text', { x: labW - 6, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'bar-label' }, clip(groupName(r.group, by), 14)),
        el('rect', { x: labW, y: y + 4, width: Math.max(0, v * pw), height: rowH - 8, rx: 2, class: `bar-rect ${v >= 0.28 ? 'f1-good' : 'f1-poor'}` }),
        el('text', { x: labW + v * pw + 4, y: y + rowH / 2 + 4, class: 'bar-val' }, pct(v))));
    });
    box.replaceChildren(svg);
  }
  function table(t, heads, rows) {
    t.replaceChildren(el('thead', null, el('tr', null, heads.map((h) => el('th', null, h)))),
      el('tbody', null, rows.length ? rows : el('tr', null, el('td', { class: 'muted', colspan: String(heads.length) }, '没有数据'))));
  }
  function renderMetrics() {
    const s = sales; const by = s.group_by;
    $('#met-report').hidden = false;
    $('#met-range').textContent = `${s.from} 至 ${s.to} · 按${GROUP[by]} · 按${s.period === 'week' ? '周' : '月'}`;
    trendChart(perPeriod(s.rows));
    groupBars(s.rows, by);
    table($('#met-rows'), [GROUP[by], '周期', '备忘录', '动作', '高价值动作', '高价值占比', '含糊', '含糊占比', '有需求', '需求捕获率'],
      s.rows.map((r) => el('tr', { dataset: { group: r.group ?? '', period: r.period } }, [groupName(r.group, by), r.period, r.memos, r.actions, r.high_value_actions,
        pct(r.high_value_share), r.vague, pct(r.vague_share), r.with_need, pct(r.need_capture_share)].map((c) => el('td', null, String(c))))));
    table($('#met-needs'), [GROUP[by], '周期', '需求', '备忘录', '上一周期', '趋势'],
      s.needs.map((n) => el('tr', { class: `trend-${n.trend}` }, [groupName(n.group, by), n.period, `${needName(n.need) || n.need}`, n.memos, n.previous, TREND[n.trend]].map((c) => el('td', null, String(c))))));
    $('#met-urgent-count').textContent = String(s.urgent.length);
    $('#met-urgent-hint').textContent = `紧急需求：${s.urgent_needs.map((id) => needName(id) || id).join('、') || '需求库没有标为 urgent 的需求'}；客户最近一条备忘录提到它，且之后 ${s.days} 天以上没有新的拜访记录。`;
    table($('#met-urgent'), ['客户', '代表', '团队', '最近拜访', '紧急需求', '已过天数'],
      s.urgent.map((u) => el('tr', { dataset: { customer: u.customer_id } }, [u.customer_id, u.rep_id || '—', u.team || '—', fmtTime(u.recorded_at),
        u.needs.map((id) => needName(id) || id).join('、'), u.days_since].map((c) => el('td', null, String(c))))));
  }
  async function downloadCsv(tableName) {
    const p = metricsQuery();
    p.set('format', 'csv'); p.set('table', tableName);
    try {
      const res = await fetch(`/v1/metrics/sales?${p}`, { headers: Object.assign({ Accept: 'text/csv' }, authHeaders()) });
      const text = await res.text();
      if (!res.ok) throw parseError(res.status, text, null);
      const url = URL.createObjectURL(new Blob(['\ufeff', text], { type: 'text/csv;charset=utf-8' }));
      const a = el('a', { href: url, download: `sales-${p.get('group_by')}-${p.get('period')}-${tableName}.csv` });
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      showError($('#met-error'), e, 'CSV 下载失败');
    }
  }
  function initMetrics() {
    $('#met-form').addEventListener('submit', (e) => { e.preventDefault(); loadMetrics(); });
    for (const a of $$('#view-metrics a.csv')) a.addEventListener('click', (e) => { e.preventDefault(); downloadCsv(a.dataset.table); });
    viewInit.metrics = () => loadMetrics();
  }

  // ------------------------------------------------------------------ start
  function start() {
    initSettings();
    initTabs();
    initTry();
    initLibrary();
    initEval();
    initHistory();
    initMetrics();
    viewInit.eval = () => { loadCatalog().catch(() => null); };
    showView(location.hash.slice(1) || 'try', false);
    checkReady();
    loadCatalog().catch(() => null); // action names for next steps, label names for evaluation
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
}());
