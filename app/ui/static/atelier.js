// Atelier UI behaviours (spec §9.5): generate-forever context menu (the loop itself runs on the server),
// keyboard shortcuts (Ctrl+Enter generate, Alt+Enter skip, Esc interrupt), and the A1111 globals extensions use.
(function () {
  "use strict";
  window.gradioApp = window.gradioApp || function () { return document; };
  const boot = window.atelierBoot || {};
  // A1111: `opts` is empty until the UI is on the page, then holds the settings (onOptionsAvailable). Extensions rely
  // on that order (Aspect Ratio Helper builds its controls once opts are there, expecting the whole UI then).
  window.opts = {};
  const tooltips = boot.tooltips || {};
  // --theme light|dark: applied here, as gradio's ?__theme= switch does (the address gets it too, so gradio's own
  // theme code agrees); the server answers / with the page, never a redirect. An explicit ?__theme= wins.
  (function applyTheme(theme) {
    if (theme !== "dark" && theme !== "light") return;
    const url = new URL(window.location.href);
    if (url.searchParams.has("__theme")) return;
    url.searchParams.set("__theme", theme);
    window.history.replaceState(window.history.state, "", url.toString());
    const apply = () => document.body.classList.toggle("dark", theme === "dark");
    if (document.body) apply(); else document.addEventListener("DOMContentLoaded", apply);
  })(boot.theme);
  // -- A1111's page helpers (script.js / ui.js of A1111), which extension scripts call at load time ------------------
  const callbacks = { uiLoaded: [], uiUpdate: [], afterUiUpdate: [], uiTabChange: [], optionsChanged: [],
                      optionsAvailable: [] };
  window.uiUpdateCallbacks = callbacks.uiUpdate;  // A1111 keeps them as globals; a few extensions push directly
  window.uiAfterUpdateCallbacks = callbacks.afterUiUpdate;
  window.uiLoadedCallbacks = callbacks.uiLoaded;
  window.uiTabChangeCallbacks = callbacks.uiTabChange;
  window.optionsChangedCallbacks = callbacks.optionsChanged;
  window.onUiLoaded = (cb) => callbacks.uiLoaded.push(cb);
  window.onUiUpdate = (cb) => callbacks.uiUpdate.push(cb);
  window.onAfterUiUpdate = (cb) => callbacks.afterUiUpdate.push(cb);
  window.onUiTabChange = (cb) => callbacks.uiTabChange.push(cb);
  window.onOptionsChanged = (cb) => callbacks.optionsChanged.push(cb);
  // A1111: called at once when `opts` already holds the settings (here they come with the page), else queued.
  window.onOptionsAvailable = (cb) => {
    if (Object.keys(window.opts || {}).length) { try { cb(); } catch (e) { console.error(e); } return; }
    callbacks.optionsAvailable.push(cb);
  };
  window.executeCallbacks = function (queue, arg) {
    for (const cb of queue) { try { cb(arg); } catch (e) { console.error("error running callback", cb, ":", e); } }
  };
  // Called with the settings JSON after the server refreshed the settings-bound controls (page load, tab switch,
  // Apply): window.opts follows the store, and A1111-style onOptionsChanged callbacks run.
  window.atelierOptionsChanged = function (text) {
    let parsed;
    try { parsed = JSON.parse(text); } catch (e) { console.error(e); return; }
    window.atelierOptionsSyncs = (window.atelierOptionsSyncs || 0) + 1;  // how many refreshes this page has had
    if (!loaded) { boot.opts = parsed; return; }  // opts appear with onUiLoaded (below), as in A1111
    window.opts = parsed;
    window.executeCallbacks(callbacks.optionsAvailable.splice(0));
    window.executeCallbacks(callbacks.optionsChanged);
  };

  const el = (id) => document.getElementById(id);
  const visible = (node) => !!(node && node.offsetParent !== null);
  const button = (id) => { const n = el(id); return n && n.tagName !== "BUTTON" ? n.querySelector("button") || n : n; };
  const TOP_TABS = "#tabs > .tab-wrapper > .tab-container[role=tablist]";  // gradio 6; A1111's is #tabs > .tab-nav

  // A1111: the selected top-level tab's button (extensions read .textContent / .innerText / compare elements).
  window.get_uiCurrentTab = function () {
    return document.querySelector(TOP_TABS + " > button.selected") || document.querySelector("#tabs > .tab-nav > button.selected");
  };
  // A1111: the visible top-level tab's content (`#tab_<id>`).
  window.get_uiCurrentTabContent = function () {
    const shown = document.querySelector('#tabs > .tabitem[id^=tab_]:not([style*="display: none"])');
    if (shown) return shown;
    return Array.from(document.querySelectorAll("#tabs > .tabitem[id^=tab_]")).find(visible) || null;
  };
  function currentTabId() {
    const b = window.get_uiCurrentTab();
    if (b && b.dataset.tabId) return b.dataset.tabId;
    const content = window.get_uiCurrentTabContent();
    return content ? content.id.replace(/^tab_/, "") : "txt2img";
  }
  window.uiElementIsVisible = function (node) {
    if (node === document) return true;
    const style = window.getComputedStyle(node);
    if (style.display === "none" || style.visibility === "hidden") return false;
    return node.parentNode ? window.uiElementIsVisible(node.parentNode) : true;
  };
  window.uiElementInSight = function (node) {
    const r = node.getBoundingClientRect();
    return r.top < window.innerHeight && r.bottom > 0;
  };
  window.updateInput = function (target) {
    const e = new Event("input", { bubbles: true });
    Object.defineProperty(e, "target", { value: target });
    target.dispatchEvent(e);
  };
  // A1111's hints.js: `titles` maps a button's or label's text to its tooltip. Extensions merge theirs into it at
  // load (sd-dynamic-prompts: `titles = {...titles, ...}`); after each UI update the page shows them as `title`s.
  window.titles = window.titles || {};
  function applyTitles() {
    const titles = window.titles;
    if (!titles || !Object.keys(titles).length) return;
    for (const node of document.querySelectorAll("span, button, select, p")) {
      if (node.title) continue;
      const text = (node.textContent || "").trim();
      const tip = Object.prototype.hasOwnProperty.call(titles, text) ? titles[text] : titles[node.value];
      if (typeof tip === "string" && tip) node.title = tip;
    }
  }
  callbacks.afterUiUpdate.push(applyTitles);
  // A1111's aspectRatioOverlay.js draws the target size over the img2img image; Atelier has no such overlay, but
  // extensions (Aspect Ratio Helper) call it after they set width/height, so it exists and does nothing.
  window.dimensionChange = window.dimensionChange || function () {};
  function generationTab() {
    const tab = currentTabId();
    return tab === "img2img" ? "img2img" : tab === "txt2img" ? "txt2img" : null;
  }
  function clickFor(tab, what) {
    const b = button(tab + "_" + what);
    if (b) b.click();
  }
  window.submit = function () { clickFor("txt2img", "generate"); };
  window.switch_to_txt2img = function () { const t = document.querySelector("#tabs button"); if (t) t.click(); };

  // -- generate forever context menu -------------------------------------------------------------------------
  let menu = null;
  function closeMenu() { if (menu) { menu.remove(); menu = null; } }
  function openMenu(event, tab) {
    event.preventDefault();
    closeMenu();
    menu = document.createElement("div");
    menu.id = "atelier-context-menu";
    const items = [["Generate forever", "forever_start"], ["Cancel generate forever", "forever_cancel"]];
    for (const [label, what] of items) {
      const item = document.createElement("div");
      item.textContent = label;
      item.className = "atelier-context-item";
      item.addEventListener("click", () => { closeMenu(); clickFor(tab, what); });
      menu.appendChild(item);
    }
    menu.style.left = event.clientX + "px";
    menu.style.top = event.clientY + "px";
    document.body.appendChild(menu);
  }
  document.addEventListener("click", (e) => { if (menu && !menu.contains(e.target)) closeMenu(); });
  document.addEventListener("contextmenu", (event) => {
    for (const tab of ["txt2img", "img2img"]) {
      for (const what of ["generate", "interrupt"]) {
        const b = el(tab + "_" + what);
        if (b && (b === event.target || b.contains(event.target))) { openMenu(event, tab); return; }
      }
    }
  });

  // -- settings search: a section named in the result line selects that section's tab --------------------------
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a.atelier-settings-section");
    if (!link) return;
    event.preventDefault();
    const tab = el(link.dataset.section + "-button");
    if (tab && visible(tab)) { tab.click(); return; }
    const more = document.querySelector("#settings .overflow-menu > button");  // gradio's "More tabs" list
    if (!more) return;
    more.click();
    setTimeout(() => {
      for (const item of document.querySelectorAll("#settings .overflow-dropdown button")) {
        if (item.textContent.trim() === link.textContent.trim()) { item.click(); return; }
      }
    }, 50);
  });

  // -- keyboard shortcuts ------------------------------------------------------------------------------------------
  window.addEventListener("keydown", (event) => {
    const tab = generationTab();
    if (!tab) return;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault(); clickFor(tab, "generate");
    } else if (event.key === "Enter" && event.altKey) {
      event.preventDefault(); clickFor(tab, "skip");
    } else if (event.key === "Escape") {
      if (menu) { closeMenu(); return; }
      clickFor(tab, "interrupt");
    }
  }, true);  // capture: components that stop the key event still let the shortcuts through

  // -- InputAccordion (A1111): a checkbox and an extra label in an accordion's header -------------------------------
  // The accordion `<id>` gets the checkbox `<id>-checkbox` and the element `<id>-extra` (or the given one) moved into
  // its header. Ticking the box opens the accordion; opening the accordion ticks the box until the box is clicked by
  // hand (then they are independent, as in A1111).
  const inputAccordions = { txt2img_hr: "txtimg_hr_finalres", txt2img_enable: null, img2img_enable: null };  // + Refiner
  function setupInputAccordion(id, extraId) {
    const acc = el(id);
    const box = el(id + "-checkbox");
    if (!acc || !box || acc.dataset.inputAccordion) return;
    const wrap = acc.querySelector(".label-wrap");
    const input = box.querySelector("input[type=checkbox]");
    if (!wrap || !input) return;
    acc.dataset.inputAccordion = "1";
    const header = document.createElement("div");
    header.className = "input-accordion-header";
    header.appendChild(box);
    const extra = el(extraId || id + "-extra");
    if (extra) header.appendChild(extra);
    acc.insertBefore(header, acc.firstChild);
    header.style.top = wrap.offsetTop + "px";  // the header row's box: the checkbox and label centre on the title
    header.style.height = wrap.offsetHeight + "px";
    let linked = true;
    const isOpen = () => wrap.classList.contains("open");
    const sync = () => { acc.classList.toggle("input-accordion-open", isOpen()); };
    input.addEventListener("click", () => { linked = false; });
    input.addEventListener("change", () => { if (input.checked && !isOpen()) wrap.click(); });
    new MutationObserver(() => {
      sync();
      if (linked && input.checked !== isOpen()) input.click();
    }).observe(wrap, { attributes: true, attributeFilter: ["class"] });
    sync();
  }
  callbacks.uiUpdate.push(() => {
    for (const [id, extraId] of Object.entries(inputAccordions)) setupInputAccordion(id, extraId);
  });

  // -- Gradio 3.41 → 6 bridges (docs/EXTENSIONS.md) -----------------------------------------------------------------
  // The buttons of one gr.Tabs: the real tablist's, then those gradio moved into its "More tabs" list.
  function tabButtons(wrapper) {
    return [...wrapper.querySelectorAll(":scope > .tab-container[role=tablist] > button"),
            ...wrapper.querySelectorAll(":scope > .overflow-menu .overflow-dropdown button")];
  }
  // Gradio 6 draws every Tabs' buttons twice: a hidden copy (to measure them) first, then the real tablist.
  // Extensions that pick tab buttons with A1111-era selectors (`#tabs > div:first-child button`) may get a hidden
  // copy; a click on it (even a non-bubbling synthetic one) is passed to the real button with the same label.
  document.addEventListener("click", (event) => {
    const copy = event.target && event.target.closest && event.target.closest(".tab-container.visually-hidden > button");
    if (!copy) return;
    const label = copy.textContent.trim();
    const target = tabButtons(copy.parentElement.parentElement).find((b) => b.textContent.trim() === label);
    if (target) { event.stopPropagation(); target.click(); }
  }, true);
  // Gradio 6's Textbox is `#id > label > div.input-container > textarea`; gradio 3.41's (A1111's) is `#id > label >
  // textarea` (and `> label > input` for one line), and extensions select it so (Tag Autocomplete attaches to
  // `#txt2img_prompt > label > textarea` and tells the prompt boxes apart with that selector). Where the container
  // holds nothing but the box, the box is moved up into the label, in front of the (then empty) container: the same
  // element, so gradio's bindings and listeners stay, and gradio's styles (`label textarea` rules) still apply. A box
  // with a submit/stop button beside it keeps gradio's layout.
  const TEXTBOX = "label > div.input-container > textarea[data-testid=textbox], " +
                  "label > div.input-container > input[data-testid=textbox]";
  function liftTextboxes(root) {
    if (!root.querySelectorAll) return;
    const boxes = root.matches && root.matches(TEXTBOX) ? [root] : Array.from(root.querySelectorAll(TEXTBOX));
    for (const box of boxes) {
      const container = box.parentElement;
      if (container.childElementCount === 1) container.parentElement.insertBefore(box, container);
    }
  }
  // Gradio 6 puts a tab's content into the page only when the tab is first opened (then keeps it, hidden, as gradio
  // 3.41 always did). A1111 extension scripts look up elements of every tab at onUiLoaded, so when the page loads
  // extension scripts, every tab (nested ones too) is opened once, out of sight, before onUiLoaded runs.
  const nextFrame = () => new Promise((resolve) => setTimeout(resolve, 0));
  async function renderAllTabs() {
    const done = new Set();
    for (let pass = 0; pass < 6; pass++) {
      const wrappers = Array.from(document.querySelectorAll(".tabs > .tab-wrapper")).filter((w) => !done.has(w));
      if (!wrappers.length) return;
      for (const wrapper of wrappers) {
        done.add(wrapper);
        const buttons = tabButtons(wrapper);
        const selected = buttons.find((b) => b.classList.contains("selected"));
        for (const label of buttons.map((b) => b.textContent.trim())) {
          const b = tabButtons(wrapper).find((x) => x.textContent.trim() === label);
          if (b && !b.classList.contains("selected") && !b.disabled) { b.click(); await nextFrame(); }
        }
        const back = selected && tabButtons(wrapper).find((x) => x.textContent.trim() === selected.textContent.trim());
        if (back && !back.classList.contains("selected")) { back.click(); await nextFrame(); }
      }
    }
  }

  // Gradio 6 also adds a closed accordion's content to the page only when it is first opened (gradio 3.41 had it,
  // hidden). The server marks extension accordions closed at start (`atelier-render-closed`); each is opened and
  // closed once here, out of sight, so extension scripts find what is inside (sd-dynamic-prompts' tree button).
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  async function renderClosedAccordions() {
    for (let pass = 0; pass < 6; pass++) {
      const heads = Array.from(document.querySelectorAll(".atelier-render-closed"))
        .map((acc) => acc.querySelector("button.label-wrap"))
        .filter((b) => b && !b.classList.contains("open") && !b.dataset.atelierRendered);
      if (!heads.length) return;
      for (const head of heads) {
        head.dataset.atelierRendered = "1";
        head.click();
        await pause(50);
        if (head.classList.contains("open")) head.click();
        await nextFrame();
      }
    }
  }

  // -- A1111-style UI callbacks: onUiLoaded once #txt2img_prompt exists, onUiUpdate per DOM change, onAfterUiUpdate
  // 200 ms after the last one, onUiTabChange when the selected top-level tab changes ------------------------------
  let loaded = false;
  let warming = false;
  let afterTimer = null;
  function uiLoaded() {
    loaded = true;
    if (!Object.keys(window.opts).length) {
      window.opts = boot.opts || {};
      window.executeCallbacks(callbacks.optionsAvailable.splice(0));
    }
    window.executeCallbacks(callbacks.uiLoaded);
    // One DOM change after opts are set: extension MutationObservers waiting for opts (Aspect Ratio Helper) run
    // now rather than at the next change the user happens to cause (in A1111 the page keeps changing then).
    const marker = document.createElement("span");
    marker.id = "atelier-ui-loaded";
    marker.hidden = true;
    document.body.appendChild(marker);
  }
  window.uiCurrentTab = null;
  const observer = new MutationObserver((mutations) => {
    for (const m of mutations) for (const n of m.addedNodes) if (n.nodeType === 1) liftTextboxes(n);
    if (!loaded && !warming && el("txt2img_prompt")) {
      if (boot.extension_scripts) {
        warming = true;
        const root = document.documentElement;
        root.style.visibility = "hidden";
        renderAllTabs().then(renderClosedAccordions).catch((e) => console.error(e)).finally(() => {
          root.style.visibility = "";
          warming = false;
          uiLoaded();
        });
      } else {
        uiLoaded();
      }
    }
    for (const [id, text] of Object.entries(tooltips)) {
      const node = button(id);
      if (node && !node.title) node.title = text;
    }
    window.executeCallbacks(callbacks.uiUpdate, mutations);
    if (afterTimer) clearTimeout(afterTimer);
    afterTimer = setTimeout(() => { afterTimer = null; window.executeCallbacks(callbacks.afterUiUpdate); }, 200);
    const tab = window.get_uiCurrentTab();
    if (tab && tab !== window.uiCurrentTab) {
      window.uiCurrentTab = tab;
      window.executeCallbacks(callbacks.uiTabChange);
    }
  });
  function start() {
    liftTextboxes(document);
    observer.observe(document.body || document.documentElement, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
