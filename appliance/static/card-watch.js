// Card presence: when the card that signed this session leaves the reader, lock the session.
(function () {
  "use strict";
  var body = document.body;
  var agent = body.getAttribute("data-card-agent");
  if (!agent) { return; }
  var csrf = body.getAttribute("data-csrf");

  function lock() {
    fetch("/session/lock", {method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": csrf}})
      .then(function (r) { return r.json(); })
      .then(function (b) { window.location.assign(b.next || "/login/card"); })
      .catch(function () { window.location.assign("/login/card"); });
  }

  function follow(request) {
    request.then(function (r) { return r.json(); }).then(function (state) {
      if (!state.card_present) { lock(); return; }
      follow(fetch(agent + "/presence?wait=25&since=" + state.events));
    }).catch(function () {
      // agent gone (workstation locked, agent stopped): treat it as a removed card
      lock();
    });
  }
  follow(fetch(agent + "/status"));
})();
