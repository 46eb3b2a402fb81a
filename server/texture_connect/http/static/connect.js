// The manufacturer search box: filters the list as the customer types. Without script the
// whole list is shown, so nothing depends on it.
(function () {
  var input = document.getElementById("search");
  var items = document.querySelectorAll("[data-search]");
  var status = document.getElementById("search-status");
  if (!input) { return; }
  input.hidden = false;
  document.getElementById("search-label").hidden = false;
  input.addEventListener("input", function () {
    var query = input.value.trim().toLowerCase();
    var shown = 0;
    items.forEach(function (item) {
      var match = item.getAttribute("data-search").indexOf(query) !== -1;
      item.hidden = !match;
      if (match) { shown += 1; }
    });
    status.textContent = shown === 1 ? "1 company" : shown + " companies";
  });
})();
