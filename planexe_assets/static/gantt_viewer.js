// PlanExe interactive Gantt viewer (planexe-dagster). Inlined into 026-2-schedule_gantt_dhtmlx.html.
//
// Reads the {tasks, links} JSON from <script id="gantt-data"> and draws a collapsible WBS tree with
// one bar per task. All task text goes into the page through textContent, never as markup, so the
// model's words cannot become HTML. No network access, no dependencies.
(function () {
  "use strict";

  var DAY_MS = 86400000;
  // Zoom 1 fits the timeline into the width left by the fixed columns (name 360px, start, end and
  // days 84 + 84 + 48px, as in the page's CSS), and never below MIN_TIMELINE_WIDTH.
  var FIXED_COLUMNS_WIDTH = 360 + 84 + 84 + 48;
  var MIN_TIMELINE_WIDTH = 480;
  var ZOOMS = [0.5, 1, 2, 4, 8, 16, 32];

  var root = document.getElementById("gantt");
  var tooltip = document.getElementById("gantt-tooltip");
  var source = document.getElementById("gantt-data");
  if (!root || !source) {
    return;
  }
  var data = JSON.parse(source.textContent);
  var tasks = data.tasks || [];
  var links = data.links || [];
  var zoomIndex = 1;

  function parseDay(text) {
    var parts = String(text).split("-");
    return Date.UTC(Number(parts[0]), Number(parts[1]) - 1, Number(parts[2]));
  }

  var byId = {};
  var childrenOf = {};
  tasks.forEach(function (task) {
    byId[task.id] = task;
    task._start = parseDay(task.start_date);
    task._end = parseDay(task.end_date);
    task._open = task.open !== false;
  });
  tasks.forEach(function (task) {
    var parent = byId[task.parent] ? task.parent : null;
    task._parent = parent;
    if (parent) {
      (childrenOf[parent] = childrenOf[parent] || []).push(task.id);
    }
  });
  tasks.forEach(function (task) {
    var depth = 0;
    var up = task._parent;
    while (up && depth < 64) {
      depth += 1;
      up = byId[up]._parent;
    }
    task._depth = depth;
  });

  var before = {};
  var after = {};
  links.forEach(function (link) {
    if (!byId[link.source] || !byId[link.target]) {
      return;
    }
    (before[link.target] = before[link.target] || []).push(link);
    (after[link.source] = after[link.source] || []).push(link);
  });

  var minStart = Infinity;
  var maxEnd = -Infinity;
  tasks.forEach(function (task) {
    minStart = Math.min(minStart, task._start);
    maxEnd = Math.max(maxEnd, task._end);
  });
  if (!isFinite(minStart)) {
    minStart = Date.UTC(2000, 0, 1);
    maxEnd = minStart + DAY_MS;
  }
  var spanMs = Math.max(maxEnd - minStart, DAY_MS);

  function percent(ms) {
    return (100 * ms) / spanMs + "%";
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  var LINK_NAMES = { "0": "FS", "1": "SS", "2": "FF", "3": "SF" };

  function linkText(link, otherId) {
    var other = byId[otherId];
    var lag = link.lag ? (link.lag > 0 ? "+" : "") + link.lag : "";
    return other.text + " (" + (LINK_NAMES[link.type] || link.type) + lag + ")";
  }

  // Header row: column titles and the time axis.
  var head = el("div", "gantt-row gantt-head");
  head.appendChild(el("div", "gantt-cell gantt-name", "Task"));
  head.appendChild(el("div", "gantt-cell", "Start"));
  head.appendChild(el("div", "gantt-cell", "End"));
  head.appendChild(el("div", "gantt-cell", "Days"));
  var axis = el("div", "gantt-cell gantt-timeline");
  head.appendChild(axis);
  root.appendChild(head);

  var rows = {};
  tasks.forEach(function (task) {
    var row = el("div", "gantt-row" + (childrenOf[task.id] ? " summary" : ""));
    row.setAttribute("role", "treeitem");
    row.setAttribute("aria-level", String(task._depth + 1));
    var name = el("div", "gantt-cell gantt-name");
    name.style.paddingLeft = 4 + task._depth * 16 + "px";
    if (childrenOf[task.id]) {
      var toggle = el("button", "gantt-toggle");
      toggle.type = "button";
      toggle.setAttribute("aria-label", "Expand or collapse");
      toggle.addEventListener("click", function (event) {
        event.stopPropagation();
        task._open = !task._open;
        refresh();
      });
      task._toggle = toggle;
      name.appendChild(toggle);
    } else {
      name.appendChild(el("span", "gantt-spacer"));
    }
    name.appendChild(el("span", "label", task.text));
    row.appendChild(name);
    row.appendChild(el("div", "gantt-cell", task.start_date));
    row.appendChild(el("div", "gantt-cell", task.end_date));
    row.appendChild(el("div", "gantt-cell", String(task.duration)));
    var line = el("div", "gantt-cell gantt-timeline");
    var bar = el("div", "gantt-bar" + (task.critical ? " critical" : ""));
    bar.style.left = percent(task._start - minStart);
    bar.style.width = percent(task._end - task._start);
    line.appendChild(bar);
    row.appendChild(line);
    row.addEventListener("mouseenter", function () {
      highlight(task, true);
    });
    row.addEventListener("mousemove", function (event) {
      placeTooltip(event.clientX, event.clientY);
    });
    row.addEventListener("mouseleave", function () {
      highlight(task, false);
    });
    rows[task.id] = row;
    root.appendChild(row);
  });

  function visible(task) {
    var up = task._parent;
    while (up) {
      if (!byId[up]._open) {
        return false;
      }
      up = byId[up]._parent;
    }
    return true;
  }

  function refresh() {
    tasks.forEach(function (task) {
      rows[task.id].classList.toggle("hidden", !visible(task));
      if (task._toggle) {
        task._toggle.textContent = task._open ? "\u25BE" : "\u25B8";
        task._toggle.setAttribute("aria-expanded", task._open ? "true" : "false");
      }
    });
  }

  function highlight(task, on) {
    (before[task.id] || []).forEach(function (link) {
      rows[link.source].classList.toggle("related-before", on);
    });
    (after[task.id] || []).forEach(function (link) {
      rows[link.target].classList.toggle("related-after", on);
    });
    if (!tooltip) {
      return;
    }
    if (!on) {
      tooltip.style.display = "none";
      return;
    }
    tooltip.textContent = "";
    tooltip.appendChild(el("strong", null, task.text));
    var facts = task.start_date + " to " + task.end_date + " (" + task.duration + " days)";
    facts += "\nFloat: " + task.total_float + " days" + (task.critical ? " (critical)" : "");
    var waits = (before[task.id] || []).map(function (link) {
      return linkText(link, link.source);
    });
    var next = (after[task.id] || []).map(function (link) {
      return linkText(link, link.target);
    });
    if (waits.length) {
      facts += "\nWaits for: " + waits.join(", ");
    }
    if (next.length) {
      facts += "\nFollowed by: " + next.join(", ");
    }
    tooltip.appendChild(document.createTextNode(facts + "\n\n" + (task.details || "")));
    tooltip.style.display = "block";
  }

  function placeTooltip(x, y) {
    if (!tooltip) {
      return;
    }
    var width = tooltip.offsetWidth;
    var height = tooltip.offsetHeight;
    var left = x + 14 + width > window.innerWidth ? Math.max(0, x - 14 - width) : x + 14;
    var top = y + 14 + height > window.innerHeight ? Math.max(0, window.innerHeight - height - 4) : y + 14;
    tooltip.style.left = left + "px";
    tooltip.style.top = top + "px";
  }

  // Month-aligned ticks, coarser when zoomed out, so labels never crowd.
  function drawAxis(widthPx) {
    axis.textContent = "";
    var steps = [1, 3, 6, 12, 24, 60, 120, 240];
    var months = spanMs / (30.44 * DAY_MS);
    var step = steps[steps.length - 1];
    for (var i = 0; i < steps.length; i++) {
      if ((widthPx / months) * steps[i] >= 70) {
        step = steps[i];
        break;
      }
    }
    var first = new Date(minStart);
    var year = first.getUTCFullYear();
    var month = first.getUTCMonth();
    if (step >= 12) {
      year -= year % (step / 12);
      month = 0;
    }
    for (var guard = 0; guard < 2000; guard++) {
      var tick = Date.UTC(year, month, 1);
      if (tick > maxEnd) {
        break;
      }
      if (tick >= minStart) {
        var label = step >= 12 ? String(year) : new Date(tick).toISOString().slice(0, 7);
        var mark = el("div", "gantt-tick", label);
        mark.style.left = percent(tick - minStart);
        axis.appendChild(mark);
      }
      month += step;
      year += Math.floor(month / 12);
      month %= 12;
    }
  }

  function baseWidth() {
    return Math.max(MIN_TIMELINE_WIDTH, root.clientWidth - FIXED_COLUMNS_WIDTH - 2);
  }

  function applyZoom() {
    var width = Math.round(baseWidth() * ZOOMS[zoomIndex]);
    root.style.setProperty("--timeline-width", width + "px");
    drawAxis(width);
  }

  document.querySelectorAll(".gantt-toolbar button[data-action]").forEach(function (button) {
    button.addEventListener("click", function () {
      var action = button.getAttribute("data-action");
      if (action === "expand" || action === "collapse") {
        tasks.forEach(function (task) {
          task._open = action === "expand";
        });
        refresh();
      } else if (action === "zoom-in" && zoomIndex < ZOOMS.length - 1) {
        zoomIndex += 1;
        applyZoom();
      } else if (action === "zoom-out" && zoomIndex > 0) {
        zoomIndex -= 1;
        applyZoom();
      }
    });
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(applyZoom, 100);
  });

  refresh();
  applyZoom();
})();
