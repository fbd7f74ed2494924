// PlanExe page height reporter (planexe-dagster). Inlined into the Gantt pages.
//
// Standalone, it does nothing. Inside a frame (the report embeds the Gantt pages in sandboxed
// iframes), it marks the document "embedded" (the shared stylesheet then drops the page header and
// margins) and posts the height of its content to the embedding page whenever it changes, so the
// report can size the frame to the whole chart. The message carries one number and nothing else.
(function () {
  "use strict";

  if (window.parent === window) {
    return;
  }
  document.documentElement.classList.add("embedded");

  var last = -1;
  function report() {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height > 0 && height !== last) {
      last = height;
      window.parent.postMessage({ planexeFrameHeight: height }, "*");
    }
  }

  if (typeof ResizeObserver === "function") {
    new ResizeObserver(report).observe(document.documentElement);
  }
  window.addEventListener("load", report);
  window.addEventListener("resize", report);
  report();
})();
