// The GraphiQL page of presenced. It is a file, not an inline script, so
// that the page's Content-Security-Policy can forbid inline scripts.
(function () {
  'use strict';
  var root = document.getElementById('graphiql');
  var tokenMode = root.getAttribute('data-auth') === 'token';
  var key = tokenMode ? 'presenced.token' : 'presenced.tenant';
  var cred = document.getElementById('cred');

  try { cred.value = localStorage.getItem(key) || ''; } catch (e) { /* storage disabled */ }
  // The endpoint is this page's own URL: GET serves the page, POST the API.
  function fetcher(params, opts) {
    var headers = { 'Content-Type': 'application/json', 'Accept': 'application/json' };
    var extra = (opts && opts.headers) || {};
    for (var h in extra) { headers[h] = extra[h]; }
    var v = cred.value.trim();
    if (v) {
      if (tokenMode) { headers['Authorization'] = 'Bearer ' + v; } else { headers['X-Tenant-Id'] = v; }
    }
    return fetch(window.location.pathname, {
      method: 'POST',
      headers: headers,
      body: JSON.stringify(params),
      credentials: 'same-origin'
    }).then(function (res) { return res.json(); });
  }

  var defaultQuery = [
    '# The indicators of your tenant\'s connected users, and who they are.',
    '# Filters: availabilityStatus, chatAvailability, groupIds,',
    '# projectIds, roles, routingGroupIds, userIds; e.g.',
    '#   connectedUsersIndicator(filters: {roles: [OPERATOR]})',
    '# Omitted or null: no constraint; [] matches no user.',
    '# Fields combine with AND, the values of a list with OR.',
    'query Indicator {',
    '  connectedUsersIndicator {',
    '    connectedUsersCount',
    '    countByChatAvailabilityStatus { available busy toggleOff }',
    '    usersInProductionChatOccupancy {',
    '      maximumSimultaneousConversationAverage',
    '      simultaneousConversationAverage',
    '      occupancyRate',
    '    }',
    '  }',
    '  # Who they are, 10 at a time, oldest connection first; the next',
    '  # page: connectedUsers(..., after: "<pageInfo.endCursor>").',
    '  connectedUsers(first: 10, orderBy: CONNECTED_AT) {',
    '    totalCount',
    '    edges {',
    '      node {',
    '        userId role availabilityStatus chatAvailability currentSlots maxSlots',
    '        connectedAt chatAvailabilityUpdatedAt lastSeenAt',
    '      }',
    '    }',
    '    pageInfo { hasNextPage endCursor }',
    '  }',
    '}',
    ''
  ].join('\n');

  var reactRoot = ReactDOM.createRoot(root);
  function render() {
    // A new fetcher makes GraphiQL fetch the schema again, now with the
    // credential just entered.
    var f = function (params, opts) { return fetcher(params, opts); };
    reactRoot.render(React.createElement(GraphiQL, { fetcher: f, defaultQuery: defaultQuery }));
  }
  cred.addEventListener('change', function () {
    try { localStorage.setItem(key, cred.value.trim()); } catch (e) { /* storage disabled */ }
    render();
  });
  render();
})();
