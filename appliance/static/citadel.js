// Citadel's page behaviour. Loaded from 'self' only: the CSP allows no inline script.
(function () {
  "use strict";

  // Ask before destructive actions: <form data-confirm="Delete this account?">
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // Buttons that print the page: <button data-print>
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-print]");
    if (button) {
      event.preventDefault();
      window.print();
    }
  });

  // Selects that submit their form when changed: <select data-autosubmit>
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) {
      event.target.form.submit();
    }
  });
})();
