// PlanExe report navigation (planexe-dagster). Inlined into 029-report.html.
//
// The sections are <details> elements. Following a link to one (a contents entry, a deep link #id
// when the page loads, any later change of the address's #fragment, a link inside a document)
// opens it, and every <details> around the target, and scrolls it into view. Also: "Open all" and
// "Close all", every section open while printing, the contents entry of the section being read is
// marked, "Back to top" shows once the page is scrolled, and each Gantt frame takes the height its
// page reports (see frame_height.js). Without this script the links still scroll to the sections.
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  function targetOf(hash) {
    if (!hash || hash.charAt(0) !== "#" || hash.length < 2) {
      return null;
    }
    var id = hash.slice(1);
    try {
      id = decodeURIComponent(id);
    } catch (error) {
      // a malformed escape: look the raw text up
    }
    return document.getElementById(id);
  }

  function reveal(target) {
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS" && !node.open) {
        node.open = true;
      }
    }
  }

  function go(hash, behavior) {
    var target = targetOf(hash);
    if (!target) {
      return;
    }
    reveal(target);
    target.scrollIntoView({ block: "start", behavior: behavior });
  }

  // A click on an in-page link: open the target first, then let the browser follow the link (it
  // scrolls and updates the address, even when the address already ends with the same #fragment).
  document.addEventListener("click", function (event) {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    var link = event.target.closest ? event.target.closest('a[href^="#"]') : null;
    var target = link ? targetOf(link.getAttribute("href")) : null;
    if (target) {
      reveal(target);
    }
  });
  window.addEventListener("hashchange", function () {
    go(window.location.hash, "auto");
  });
  if (window.location.hash) {
    go(window.location.hash, "instant");
  }

  // Open all / Close all.
  var sections = Array.prototype.slice.call(document.querySelectorAll("details.section"));
  var actions = document.querySelector(".toc-actions");
  if (actions) {
    actions.hidden = false;
    actions.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest("button[data-action]") : null;
      if (!button) {
        return;
      }
      var open = button.getAttribute("data-action") === "open-all";
      sections.forEach(function (section) {
        section.open = open;
      });
    });
  }

  // Printing shows every section; the closed ones close again afterwards.
  var closedBeforePrint = [];
  window.addEventListener("beforeprint", function () {
    closedBeforePrint = sections.filter(function (section) {
      return !section.open;
    });
    closedBeforePrint.forEach(function (section) {
      section.open = true;
    });
  });
  window.addEventListener("afterprint", function () {
    closedBeforePrint.forEach(function (section) {
      section.open = false;
    });
    closedBeforePrint = [];
  });

  // The contents entry of the section at the top of the window, and the Back to top control.
  var entries = {};
  Array.prototype.forEach.call(document.querySelectorAll("nav.toc a[href^='#']"), function (link) {
    entries[link.getAttribute("href").slice(1)] = link;
  });
  var backToTop = document.querySelector(".back-to-top");
  var current = null;
  var pending = false;
  function update() {
    pending = false;
    var reading = null;
    for (var i = 0; i < sections.length; i++) {
      if (sections[i].getBoundingClientRect().top <= 80) {
        reading = sections[i];
      } else {
        break;
      }
    }
    var entry = reading ? entries[reading.id] : null;
    if (entry !== current) {
      if (current) {
        current.removeAttribute("aria-current");
      }
      if (entry) {
        entry.setAttribute("aria-current", "true");
      }
      current = entry;
    }
    if (backToTop) {
      backToTop.classList.toggle("shown", window.scrollY > 400);
    }
  }
  window.addEventListener("scroll", function () {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(update);
    }
  }, { passive: true });
  update();

  // Gantt frames: as tall as the page inside says it is (a number, nothing else, is read).
  var frames = Array.prototype.slice.call(document.querySelectorAll("iframe.gantt-frame"));
  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!data || typeof data.planexeFrameHeight !== "number" || !isFinite(data.planexeFrameHeight)) {
      return;
    }
    frames.forEach(function (frame) {
      if (frame.contentWindow === event.source) {
        var height = Math.min(Math.max(Math.ceil(data.planexeFrameHeight), 120), 200000);
        var borders = frame.offsetHeight - frame.clientHeight;
        frame.style.height = height + borders + "px";
        frame.setAttribute("data-sized", "");
      }
    });
  });
})();
