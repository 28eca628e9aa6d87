// mailroom workbench: the little the pages do in the browser. Everything works without it
// (forms post, pages render on the server); with it, the JSON of an edited payload is checked
// while typing, "select all" works, and a bulk replay's progress updates without a reload.
'use strict';

function checkJson(textarea) {
  var state = document.getElementById('json-state');
  var submit = document.getElementById('edit-replay-submit');
  try {
    JSON.parse(textarea.value);
    state.textContent = 'valid JSON';
    state.className = 'json-state ok';
    if (submit) submit.disabled = false;
  } catch (error) {
    state.textContent = 'not JSON: ' + error.message;
    state.className = 'json-state bad';
    if (submit) submit.disabled = true;
  }
}

function pollJob(job) {
  var url = job.getAttribute('data-status-url');
  var set = function (id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = String(text);
  };
  var tick = function () {
    fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        var bar = document.getElementById('job-progress');
        if (bar) {
          bar.max = Math.max(1, s.total);
          bar.value = Math.min(s.examined, Math.max(1, s.total));
        }
        set('job-state', s.state);
        document.getElementById('job-state').className = 'state-' + s.state;
        set('job-examined', s.examined);
        set('job-total', s.total);
        set('job-replayed', s.replayed);
        set('job-skipped', s.skipped);
        set('job-error', s.error || '');
        var list = document.getElementById('job-skipped-reasons');
        if (list && list.children.length !== s.skippedReasons.length) {
          list.textContent = '';
          s.skippedReasons.forEach(function (r) {
            var li = document.createElement('li');
            li.textContent = r; // text, never markup
            list.appendChild(li);
          });
        }
        job.setAttribute('data-state', s.state);
        if (s.state === 'running') setTimeout(tick, 400);
        else {
          var cancel = document.getElementById('cancel-form');
          if (cancel) cancel.remove();
        }
      })
      .catch(function () { setTimeout(tick, 2000); });
  };
  if (job.getAttribute('data-state') === 'running') setTimeout(tick, 200);
}

document.addEventListener('DOMContentLoaded', function () {
  var all = document.getElementById('select-all');
  if (all) {
    all.addEventListener('change', function () {
      document.querySelectorAll('input[name="ids"][type="checkbox"]').forEach(function (box) { box.checked = all.checked; });
    });
  }
  var textarea = document.querySelector('textarea[data-json]');
  if (textarea) {
    textarea.addEventListener('input', function () { checkJson(textarea); });
    checkJson(textarea);
  }
  var job = document.getElementById('job');
  if (job) pollJob(job);
});
