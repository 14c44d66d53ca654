// Card sign-in: the card agent on this computer has the card sign the server's challenge.
(function () {
  "use strict";
  var box = document.getElementById("card-login");
  var form = document.getElementById("card-form");
  if (!box || !form) { return; }
  var agent = box.getAttribute("data-agent");
  var status = document.getElementById("agent-status");
  var errorBox = document.getElementById("card-error");

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  fetch(agent + "/status").then(function (r) { return r.json(); }).then(function (s) {
    status.textContent = s.card_present ? "Card found in " + s.reader + "." : "Insert your card.";
  }).catch(function () {
    status.textContent = "The card agent is not running on this computer: start `appliance card-agent`.";
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    var pin = document.getElementById("pin");
    var button = document.getElementById("card-submit");
    button.disabled = true;
    fetch(agent + "/sign", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({challenge: box.getAttribute("data-challenge"), pin: pin.value})
    }).then(function (r) {
      return r.json().then(function (body) { return {ok: r.ok, body: body}; });
    }).then(function (signed) {
      pin.value = "";
      if (!signed.ok) { throw new Error(signed.body.error ? signed.body.error.message : "The card could not sign."); }
      return fetch(box.getAttribute("data-submit"), {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": box.getAttribute("data-csrf")},
        body: JSON.stringify({challenge: box.getAttribute("data-challenge"),
                              signature: signed.body.signature,
                              key_fingerprint: signed.body.key_fingerprint})
      });
    }).then(function (r) {
      return r.json().then(function (body) { return {ok: r.ok, body: body}; });
    }).then(function (result) {
      if (!result.ok) { throw new Error(result.body.error.message); }
      window.location.assign(result.body.next);
    }).catch(function (err) {
      button.disabled = false;
      showError(err.message || "The card agent could not be reached.");
    });
  });
})();
