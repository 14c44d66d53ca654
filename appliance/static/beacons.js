// Copy, cut and print on CRM pages are reported to the appliance: which records, how much,
// never the copied text. Rows and record pages carry data-entity and data-id.
(function () {
  "use strict";
  var csrf = document.querySelector("meta[name=csrf-token]");
  if (!csrf) { return; }

  function recordsIn(selection) {
    var found = {};
    var entity = null;
    if (selection && selection.rangeCount) {
      document.querySelectorAll("[data-id][data-entity]").forEach(function (el) {
        if (selection.containsNode(el, true)) {
          found[el.getAttribute("data-id")] = true;
          entity = entity || el.getAttribute("data-entity");
        }
      });
    }
    var page = document.querySelector("main [data-record]");
    if (!entity && page) {
      entity = page.getAttribute("data-entity");
      found[page.getAttribute("data-id")] = true;
    }
    return {entity: entity, ids: Object.keys(found)};
  }

  function send(action, records, size) {
    fetch("/api/v1/beacons", {
      method: "POST", credentials: "same-origin", keepalive: true,
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf.getAttribute("content")},
      body: JSON.stringify({action: action, entity: records.entity, ids: records.ids.slice(0, 500),
                            size: size, page: window.location.pathname})
    }).catch(function () { /* the audit trail may be unreachable; never block the person */ });
  }

  ["copy", "cut"].forEach(function (kind) {
    document.addEventListener(kind, function () {
      var selection = window.getSelection();
      var records = recordsIn(selection);
      if (records.entity) { send(kind, records, String(selection).length); }
    });
  });

  window.addEventListener("beforeprint", function () {
    var rows = document.querySelectorAll("[data-id][data-entity]");
    var ids = [];
    var entity = null;
    rows.forEach(function (el) { ids.push(el.getAttribute("data-id")); entity = entity || el.getAttribute("data-entity"); });
    if (entity) { send("print", {entity: entity, ids: ids}, 0); }
  });
})();
