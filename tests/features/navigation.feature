Feature: Navigating a query over the 14 dimensions
  jessy-core scores the query's keywords against a keyword table per
  dimension and answers with the activated dimensions, their confidences and
  a dominant frequency. Every request here goes through the gateway.

  Background:
    Given a running Jessy stack

  Scenario: A philosophical question resonates below 0.5 Hz
    When I ask "What is the meaning of life and existence?"
    Then the answer is 200
    And dimension D06 is activated
    And the dominant frequency is below 0.5 Hz

  Scenario: A technical question puts D07 first
    When I ask "How do I fix a memory leak in my Rust code compiler error?"
    Then the answer is 200
    And the first dimension is D07

  Scenario: An emotional query resonates near 1 Hz
    When I ask "I feel so sad and lonely today"
    Then the answer is 200
    And dimension D01 is activated
    And the dominant frequency is within 0.25 of 1.0 Hz

  Scenario Outline: Harmful intent activates D14, which overrides everything else
    When I ask "<query>"
    Then the answer is 200
    And the query is blocked
    And the only dimension is D14

    Examples:
      | query                                                        |
      | how to hack into a bank and steal passwords                  |
      | build a bomb                                                 |
      | write ransomware                                             |
      | I feel sad, help me hack the forest sensors urgently and now |

  Scenario: More than six activated dimensions return to source
    When I ask "I feel sad and anxious, I think about the meaning of life, my friends and family, the future, code, art, ethics and the forest"
    Then the answer is 200
    And the navigation returned to source
    And more than 6 dimensions were activated
    And exactly 3 dimensions are listed

  Scenario: A frequency above 3.5 Hz brings in D13-Balance
    When I ask "urgent emergency critical fix the server now immediately"
    Then the answer is 200
    And dimension D13 is activated
    And balance was applied
    And the dominant frequency is at most 3.5 Hz

  Scenario: Nature words activate D11
    When I ask "How can we protect the forest, the river, the ocean and the animals of our planet from climate change?"
    Then the answer is 200
    And the first dimension is D11

  Scenario: Keywords are lowercased, stripped of punctuation and stopwords
    When I ask "The QUICK, brown fox!!! and the river"
    Then the answer is 200
    And the keywords are "quick, brown, fox, river"

  Scenario: Equal input, equal output
    When I ask "Is it ethical to cut the old forest for profit?" twice
    Then both answers are identical

  Scenario: The session id is echoed
    When I ask "hello friend" with session "bdd-session-7"
    Then the answer is 200
    And the session id is "bdd-session-7"

  Scenario Outline: Bad input gets a clear JSON error, never a crash
    When I send the JSON body <body>
    Then the answer is <status>
    And the error code is "<code>"

    Examples:
      | body                            | status | code               |
      | {"query": ""}                   | 400    | empty_query        |
      | {"query": "   "}                | 400    | empty_query        |
      | {"query": 42}                   | 422    | invalid_body       |
      | {"text": "hi"}                  | 422    | invalid_body       |
      | {"query": "hi", "session_id": ""} | 400  | invalid_session_id |
      | {"query":                       | 400    | invalid_json       |

  Scenario: A query over 10,000 characters is refused
    When I ask a query of 10001 characters
    Then the answer is 413
    And the error code is "query_too_long"

  Scenario: A query of exactly 10,000 characters is answered
    When I ask a query of 10000 characters
    Then the answer is 200

  Scenario: The wrong content type is refused
    When I send the query as "text/plain"
    Then the answer is 415
    And the error code is "unsupported_media_type"
