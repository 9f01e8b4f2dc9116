Feature: The gateway in front of the core
  jessy-api forwards /api/v1/* to jessy-core and protects it: request ids,
  rate limits, body limits, and clear answers when the core is gone.

  Background:
    Given a running Jessy stack

  Scenario: The gateway reports its own health and the core's state
    When I GET "/api/health"
    Then the answer is 200
    And the JSON field "service" is "jessy-api"
    And the JSON field "status" is "healthy"
    And the JSON field "upstream.state" is "up"

  Scenario: The gateway is ready while the core is
    When I GET "/api/ready"
    Then the answer is 200

  Scenario: Status and health of the core are reachable through the gateway
    When I GET "/api/v1/status"
    Then the answer is 200
    And the JSON field "service" is "jessy-core"
    When I GET "/api/v1/health"
    Then the answer is 200
    And the JSON field "status" is "healthy"

  Scenario: A request id travels through both services and back
    When I GET "/api/v1/status" with request id "bdd-trace-1"
    Then the answer is 200
    And the response header "x-request-id" is "bdd-trace-1"

  Scenario: Errors from the core carry the same request id
    When I GET "/api/v1/nothing-here" with request id "bdd-trace-2"
    Then the answer is 404
    And the error code is "not_found"
    And the JSON field "error.request_id" is "bdd-trace-2"

  Scenario: Unknown routes outside /api/v1 are JSON 404s from the gateway
    When I GET "/elsewhere"
    Then the answer is 404
    And the error code is "not_found"

  Scenario: The gateway exposes its metrics
    When I GET "/api/metrics"
    Then the answer is 200
    And the body contains "jessy_api_rejections_total"
    And the body contains "http_requests_total"

  @local
  Scenario: A client over its rate gets 429 with Retry-After
    Given a Jessy stack whose gateway allows 3 requests per minute
    When I ask "hello" 4 times
    Then the first 3 answers are 200 and the last is 429
    And the error code is "rate_limited"
    And the response has a "retry-after" header

  @local
  Scenario: Health stays available to a rate-limited client
    Given a Jessy stack whose gateway allows 1 requests per minute
    When I ask "hello" 2 times
    And I GET "/api/health"
    Then the answer is 200

  @local
  Scenario: A body over the gateway's limit is refused before the core sees it
    When I send a body of 20000 bytes
    Then the answer is 413
    And the error code is "body_too_large"

  @local
  Scenario: A stopped core is a 502 and the gateway stops being ready
    Given the core is stopped
    When I ask "hello"
    Then the answer is 502
    And the error code is "upstream_unavailable"
    When I GET "/api/ready"
    Then the answer is 503
    When I GET "/api/health"
    Then the answer is 200
    And the JSON field "upstream.state" is "down"
