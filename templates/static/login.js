// The logged-in page: copy button, hand-over to the window that opened this
// one (window.opener.postMessage), and a note once a polling client has
// picked up the AuthID. No inline script: this file runs under the page's
// CSP nonce.
(function () {
  'use strict';
  var result = document.getElementById('login-result');
  var authidEl = document.getElementById('authid');
  var status = document.getElementById('status');
  if (!result || !authidEl) {
    return;
  }
  var authid = (authidEl.textContent || '').trim();

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function selectAuthId() {
    var range = document.createRange();
    range.selectNodeContents(authidEl);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  var copy = document.getElementById('copy');
  if (copy) {
    copy.hidden = false;
    copy.addEventListener('click', function () {
      var copied = function () {
        copy.textContent = 'Copied';
        window.setTimeout(function () { copy.textContent = 'Copy AuthID'; }, 2000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(authid).then(copied, selectAuthId);
      } else {
        selectAuthId();
        try {
          if (document.execCommand('copy')) {
            copied();
          }
        } catch (e) {
          // The text stays selected for a manual copy.
        }
      }
    });
  }

  // The browser delivers a message only when the opener's origin matches
  // the target, and tells this page nothing either way: the text may only
  // claim what is certain.
  if (window.opener && !window.opener.closed) {
    var origins = (result.getAttribute('data-origins') || '*').split(' ').filter(Boolean);
    var message = 'authid:' + authid;
    var posted = false;
    origins.forEach(function (origin) {
      try {
        window.opener.postMessage(message, origin);
        posted = true;
      } catch (e) {
        // A malformed origin or a closed opener: the copy button remains.
      }
    });
    if (posted && origins.length === 1 && origins[0] === '*') {
      say('The AuthID was sent to the window that opened this one. If your backup client does not show it, copy the AuthID below.');
    } else if (posted) {
      say('If the window that opened this one shows ' + origins.join(' or ') + ', the AuthID was sent to it. If your backup client does not show it, copy the AuthID below.');
    }
  }

  var token = result.getAttribute('data-token');
  if (token && window.fetch) {
    var base = result.getAttribute('data-base') || '';
    var tries = 0;
    var poll = function () {
      tries += 1;
      window.fetch(base + '/token-state?token=' + encodeURIComponent(token), { cache: 'no-store' })
        .then(function (r) { return r.json(); })
        .then(function (state) {
          if (state && state.success === true) {
            say('Your backup client has received the AuthID. You can close this window.');
          } else if (tries < 40) {
            window.setTimeout(poll, 3000);
          }
        })
        .catch(function () {
          if (tries < 40) {
            window.setTimeout(poll, 3000);
          }
        });
    };
    window.setTimeout(poll, 1000);
  }
})();
