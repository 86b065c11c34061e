// Atelier UI behaviours (spec §9.5): generate-forever context menu (the loop itself runs on the server),
// keyboard shortcuts (Ctrl+Enter generate, Alt+Enter skip, Esc interrupt), and the A1111 globals extensions use.
(function () {
  "use strict";
  window.gradioApp = window.gradioApp || function () { return document; };
  const boot = window.atelierBoot || {};
  window.opts = boot.opts || {};
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
  const callbacks = { uiLoaded: [], uiUpdate: [], afterUiUpdate: [], uiTabChange: [], optionsChanged: [] };
  window.onUiLoaded = (cb) => callbacks.uiLoaded.push(cb);
  window.onUiUpdate = (cb) => callbacks.uiUpdate.push(cb);
  window.onAfterUiUpdate = (cb) => callbacks.afterUiUpdate.push(cb);
  window.onUiTabChange = (cb) => callbacks.uiTabChange.push(cb);
  window.onOptionsChanged = (cb) => callbacks.optionsChanged.push(cb);
  // Called with the settings JSON after the server refreshed the settings-bound controls (page load, tab switch,
  // Apply): window.opts follows the store, and A1111-style onOptionsChanged callbacks run.
  window.atelierOptionsChanged = function (text) {
    try { window.opts = JSON.parse(text); } catch (e) { console.error(e); return; }
    window.atelierOptionsSyncs = (window.atelierOptionsSyncs || 0) + 1;  // how many refreshes this page has had
    callbacks.optionsChanged.forEach((cb) => { try { cb(); } catch (e) { console.error(e); } });
  };

  const el = (id) => document.getElementById(id);
  const visible = (node) => !!(node && node.offsetParent !== null);
  const button = (id) => { const n = el(id); return n && n.tagName !== "BUTTON" ? n.querySelector("button") || n : n; };

  window.get_uiCurrentTab = function () {
    for (const tab of ["txt2img", "img2img", "extras", "pnginfo", "settings", "extensions"]) {
      const node = el("tab_" + tab);
      if (visible(node)) return tab;
    }
    return "txt2img";
  };
  window.get_uiCurrentTabContent = function () { return el("tab_" + window.get_uiCurrentTab()); };
  window.updateInput = function (target) {
    target.dispatchEvent(new Event("input", { bubbles: true }));
  };
  function generationTab() {
    const tab = window.get_uiCurrentTab();
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
  const inputAccordions = { txt2img_hr: "txtimg_hr_finalres" };
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

  // -- A1111-style UI callbacks ------------------------------------------------------------------------------------
  let loaded = false;
  const observer = new MutationObserver((mutations) => {
    if (!loaded && el("txt2img_prompt")) {
      loaded = true;
      callbacks.uiLoaded.forEach((cb) => { try { cb(); } catch (e) { console.error(e); } });
    }
    for (const [id, text] of Object.entries(tooltips)) {
      const node = button(id);
      if (node && !node.title) node.title = text;
    }
    callbacks.uiUpdate.forEach((cb) => { try { cb(mutations); } catch (e) { console.error(e); } });
  });
  function start() { observer.observe(document.body || document.documentElement, { childList: true, subtree: true }); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
