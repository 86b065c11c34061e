// Extra Networks cards (app/ui/extra_networks.py renders them): a click on a LoRA / textual-inversion card adds its
// text to the prompt box last focused in that tab (positive or negative), a second click removes it again; a LoRA
// with a "negative text" adds that to the negative prompt at the same time. A checkpoint card and a card's ✎ go to
// the server through the hidden `<tab>_extra_action` box (select the checkpoint, open the metadata editor).
(function () {
  "use strict";
  const lastPrompt = {};  // tab -> the prompt textarea focused last (A1111's activePromptTextarea)

  document.addEventListener("focusin", (event) => {
    const area = event.target;
    if (!(area instanceof HTMLTextAreaElement)) return;
    for (const tab of ["txt2img", "img2img"]) {
      if (area.closest(`#${tab}_prompt, #${tab}_neg_prompt`)) lastPrompt[tab] = area;
    }
  });

  const escapeRegex = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const separator = () => {
    const sep = (window.opts || {}).extra_networks_add_text_separator;
    return typeof sep === "string" ? sep : " ";
  };
  const tidy = (text) => text.replace(/[ \t]{2,}/g, " ").replace(/\s*,(\s*,)+/g, ",").replace(/^[\s,]+|[\s,]+$/g, "");

  // The prompt without `add` when it holds it (a tag `<kind:name:...>` matches with any weight, with the text that
  // followed it when added), else null.
  function removed(text, add) {
    const tag = add.match(/^<([^:>]+):([^:>]+)(?::[^>]*)?>(.*)$/s);
    let pattern;
    if (tag) {
      const rest = tag[3].trim();
      pattern = new RegExp("<" + escapeRegex(tag[1]) + ":" + escapeRegex(tag[2]) + "(?::[^>]*)?>" +
                           (rest ? "(?:\\s*" + escapeRegex(rest) + ")?" : ""));
    } else {
      pattern = new RegExp("(^|[\\s,(])" + escapeRegex(add) + "(?=$|[\\s,):])");
    }
    const match = text.match(pattern);
    if (!match) return null;
    const keep = tag ? "" : match[1];
    return tidy(text.slice(0, match.index) + keep + text.slice(match.index + match[0].length));
  }

  // A1111's tryToRemoveExtraNetworkFromPrompt + updatePromptArea: toggle `add` in the textarea.
  window.atelierToggleInPrompt = function (area, add) {
    if (!area || !add) return;
    const without = removed(area.value, add);
    area.value = without !== null ? without : (area.value.trim() ? area.value.replace(/\s+$/, "") + separator() + add
                                                                  : add);
    window.updateInput(area);
  };

  function sendAction(tab, data) {
    const box = document.querySelector(`#${tab}_extra_action textarea, #${tab}_extra_action input`);
    const button = document.getElementById(`${tab}_extra_action_button`);
    if (!box || !button) return;
    box.value = JSON.stringify(data);
    window.updateInput(box);
    setTimeout(() => (button.tagName === "BUTTON" ? button : button.querySelector("button") || button).click(), 0);
  }

  document.addEventListener("click", (event) => {
    const card = event.target.closest && event.target.closest(".extra-network-cards .card");
    if (!card) return;
    const d = card.dataset;
    const tab = d.tab;
    if (event.target.closest("[data-action=edit]")) {
      event.stopPropagation();
      sendAction(tab, { action: "edit", kind: d.kind, filename: d.filename });
      return;
    }
    if (d.kind === "checkpoints") {
      sendAction(tab, { action: "select", kind: d.kind, filename: d.filename });
      return;
    }
    const positive = document.querySelector(`#${tab}_prompt textarea`);
    const negative = document.querySelector(`#${tab}_neg_prompt textarea`);
    if (d.negative) {
      window.atelierToggleInPrompt(positive, d.prompt);
      window.atelierToggleInPrompt(negative, d.negative);
    } else {
      window.atelierToggleInPrompt(lastPrompt[tab] || positive, d.prompt);
    }
  });
})();
