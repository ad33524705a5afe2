"""What is mutated, and which tests each mutant of it runs: the security- and data-critical code.

Each target names only tests that can notice a fault in it, so that one mutant runs in seconds.
Tests that run the server in a subprocess (over stdio, the CLI) never see a mutant, which lives
in the runner's own process, so none is named here.
"""

from __future__ import annotations

from mutation.generate import Target

_SECRETS = "tests/test_secrets.py"
_RELIABILITY = "tests/test_reliability.py"
_CACHE = "tests/test_paging_and_cache.py"
_VERSIONS = "tests/test_api_versions.py"
_BOUNDS = "tests/test_bounds.py"
_SHARED = "tests/test_shared_cache.py"

TARGETS = (
    Target(
        "census_mcp/redaction.py",
        tests=(
            "tests/test_redaction.py",
            f"{_SECRETS}::test_the_log_filter_scrubs_each_shape_of_secret",
            f"{_SECRETS}::test_the_log_filter_scrubs_tracebacks",
            f"{_SECRETS}::test_the_servers_logging_scrubs_both_tokens_by_value",
            "tests/test_errors.py::test_census_errors_that_echo_credentials_are_scrubbed",
            f"{_SECRETS}::test_a_numeric_secret_that_census_echoes_back_is_scrubbed",
            f"{_SECRETS}::test_the_token_is_sent_as_given_yet_never_shown_in_errors",
            f"{_SECRETS}::test_settings_client_and_errors_render_without_secrets",
            "tests/test_bounds.py::test_the_secret_key_cache_holds_only_short_names",
        ),
    ),
    Target(
        "census_mcp/logs.py",
        tests=("tests/test_logs.py", f"{_SECRETS}::test_the_servers_logging_scrubs_both_tokens_by_value"),
    ),
    Target(
        "census_mcp/untrusted.py",
        tests=(
            "tests/test_summaries.py",
            "tests/test_logs.py::test_log_lines_escape_what_could_forge_or_hide_a_line",
            "tests/test_logs.py::test_log_lines_escape_only_what_could_forge_or_hide_a_line",
        ),
    ),
    Target(
        "census_mcp/http.py",
        tests=(
            "tests/test_http.py",
            *(
                f"tests/test_hostile_http.py::{name}"
                for name in (
                    "test_answers_are_bounded_and_echo_nothing_raw",
                    "test_the_sdks_own_answers_are_bounded_and_echo_nothing_raw",
                    "test_work_per_request_is_bounded_before_validation",
                    "test_oversized_deep_batched_and_malformed_bodies_are_refused_small",
                    "test_a_client_that_hangs_up_mid_body_leaves_one_quiet_line",
                    "test_connections_that_never_finish_their_headers_are_closed[in-process]",
                    "test_a_body_that_trickles_in_is_cut_off_and_the_token_is_checked_first",
                    "test_host_and_origin_are_compared_exactly",
                    "test_allowed_hosts_and_origins_still_pass",
                    "test_two_authorization_headers_are_refused",
                    "test_two_origin_headers_are_refused",
                    "test_a_host_names_the_port_its_pattern_names",
                    "test_an_origin_is_a_scheme_and_an_allowed_host",
                    "test_the_header_deadline_says_what_it_closed",
                    "test_a_kept_alive_connection_outlives_the_header_deadline_between_requests",
                    "test_two_authorization_headers_are_refused_without_auth_too",
                    "test_auth_scheme_variants",
                    "test_without_a_valid_token_the_body_is_never_waited_for",
                    "test_a_tokens_shape_gets_no_more_than_the_body_budget",
                    "test_a_head_over_16_kib_is_refused_however_it_arrives",
                    "test_heads_a_proxy_might_read_otherwise_are_refused_and_closed",
                    "test_a_request_id_is_a_string_or_a_safe_integer",
                )
            ),
            "tests/test_oauth.py",
            "tests/test_audit.py::test_a_write_refused_for_want_of_the_write_scope_is_audited",
        ),
        keywords="not v1",  # the gate reads HTTP, never the Census API version
    ),
    Target(
        "census_mcp/auth/oauth.py",
        only=(
            "ALGORITHMS",
            "CLOCK_SKEW_SECONDS",
            "MAX_BEARER_CHARS",
            "_MAX_JWT_HEADER_CHARS",
            "_KEY_FETCHES_PER_MINUTE",
            "KeySet",
            "JwtVerifier",
            "_fits",
            "IntrospectionVerifier",
            "access_token",
            "scopes_of",
            "RememberingVerifier",
            "ResourceServer",
            "_tool_call",
            "is_id_token",
            "ACCESS_TOKEN_TYPES",
            "GENERIC_JWT_TYPES",
            "_ID_TOKEN_CLAIMS",
            "KeySet",
            "key_lifetime",
            "_usable_keys",
            "TokenKindVerifier",
            "_is_jwt",
        ),
        tests=(
            "tests/test_oauth.py",
            "tests/test_audit.py::test_a_write_refused_for_want_of_the_write_scope_is_audited",
        ),
        # A token's checks never read the Census API version; the tests that start census-mcp as a
        # process of its own never see a mutant.
        keywords="not v1 and not command_line and not unusable_url_setting",
    ),
    Target(
        "census_mcp/auth/audit.py",
        tests=("tests/test_audit.py",),
        keywords="not v1",  # who wrote what is told the same way on either API version
    ),
    Target(
        "census_mcp/census/retry.py",
        tests=(
            "tests/test_retries.py",
            f"{_RELIABILITY}::test_a_tool_call_never_hangs",
        ),
    ),
    Target(
        "census_mcp/tools/sources.py",
        only=(
            "list_sources_sorted",
            "create_source",
            "_existing_source_ids",
            "_CLOCK_SKEW",
            "_find_unconfirmed_create",
            "_created_since",
        ),
        tests=(
            f"{_RELIABILITY}::test_a_create_whose_answer_is_lost_is_found_not_repeated",
            f"{_RELIABILITY}::test_a_create_that_failed_before_census_says_so_and_creates_nothing",
            f"{_RELIABILITY}::test_a_lost_create_is_never_credited_with_a_source_that_was_already_there",
            f"{_RELIABILITY}::test_lookalikes_created_meanwhile_are_named_not_guessed",
            f"{_RELIABILITY}::test_a_lost_create_never_claims_a_source_with_another_label",
            f"{_RELIABILITY}::test_a_lost_create_claims_only_a_new_source_of_its_type_label_and_group",
            f"{_RELIABILITY}::test_a_lost_create_that_cannot_be_looked_for_says_not_to_create_again",
            f"{_RELIABILITY}::test_a_create_whose_read_back_fails_still_reports_the_new_id",
            "tests/test_source_tools.py::test_create_source_returns_the_source_without_its_credentials",
            "tests/test_api_versions.py::test_create_source_needs_a_group_on_v2_and_refuses_one_on_v1",
            "tests/test_api_versions.py::test_a_group_named_in_the_call_wins_over_census_group_id",
            "tests/test_api_versions.py::test_the_apps_sorted_view_filters_by_group",
            "tests/test_app.py::test_the_app_only_sort_orders_every_match_before_paging",
            "tests/test_app.py::test_the_app_only_sort_takes_the_name_filter_refresh_and_an_ascending_default",
        ),
    ),
    Target(
        "census_mcp/census/cache.py",
        tests=(
            f"{_CACHE}::test_paging_and_refiltering_reuse_one_read",
            f"{_CACHE}::test_every_write_clears_the_cache",
            f"{_CACHE}::test_a_list_read_racing_a_write_is_not_served_after_it",
            f"{_CACHE}::test_a_failed_write_clears_the_cache_too",
            f"{_CACHE}::test_zero_seconds_disables_the_cache",
            f"{_CACHE}::test_the_cache_is_keyed_by_token",
            f"{_CACHE}::test_entries_expire_after_the_window",
            f"{_CACHE}::test_a_one_second_window_still_caches",
            f"{_CACHE}::test_a_token_never_reaches_the_cache_key",
            f"{_CACHE}::test_concurrent_misses_share_one_fetch_and_hits_do_not_queue",
            f"{_CACHE}::test_a_listing_travels_to_a_shared_cache_and_back_unchanged",
            *(
                f"{_BOUNDS}::{name}"
                for name in (
                    "test_fifty_thousand_keys_leave_the_configured_entries_and_nothing_else",
                    "test_the_size_bound_evicts_a_large_listing_before_the_count_bound_is_reached",
                    "test_the_expired_go_first_then_the_least_recently_used",
                    "test_an_expired_list_goes_before_a_fresher_one_used_less_recently",
                    "test_the_bytes_held_are_those_of_the_lists_kept",
                    "test_an_expired_list_whose_read_again_fails_holds_nothing",
                    "test_a_write_to_one_workspace_leaves_a_read_of_another_to_be_kept",
                    "test_a_fetch_begun_before_a_write_is_not_stored_after_it",
                    "test_a_waiter_that_gives_up_leaves_nothing_behind",
                    "test_a_listing_weighs_what_its_pages_weigh_once_parsed",
                    "test_a_list_over_the_budget_is_read_again_and_a_small_one_reused",
                    "test_the_cache_bounds_are_settings_with_defaults",
                )
            ),
            "tests/test_shared_cache.py::test_workers_share_one_read_per_window_and_a_write_clears_it_for_all",
            "tests/test_shared_cache.py::test_redis_going_away_fails_no_call",
        ),
    ),
    Target(
        "census_mcp/census/shared_cache.py",
        tests=(
            *(
                f"{_SHARED}::{name}"
                for name in (
                    "test_workers_share_one_read_per_window_and_a_write_clears_it_for_all",
                    "test_redis_going_away_fails_no_call",
                    "test_a_write_while_redis_is_paused_is_seen_by_the_other_worker_once_it_resumes",
                    "test_while_redis_is_down_and_once_it_restarts_empty_no_worker_serves_a_list_from_before_a_write",
                    "test_a_redis_that_comes_back_with_its_lists_serves_them_until_the_write_is_announced",
                    "test_a_worker_cut_off_from_redis_hides_its_write_from_the_others_for_one_window_at_most",
                    "test_a_second_passthrough_user_never_sees_the_first_users_list",
                    "test_a_near_copy_lives_no_longer_than_the_window_since_census_was_read",
                    "test_no_window_or_no_codec_keeps_lists_out_of_redis",
                    "test_a_worker_new_to_a_list_gets_it_from_redis_as_read_then",
                    "test_a_hit_in_a_workers_own_copy_costs_one_small_read_of_redis",
                    "test_a_refreshed_copy_replaces_the_old_one",
                    "test_after_a_write_the_next_read_is_shared_again",
                    "test_one_worker_reads_while_the_others_wait_for_it_gently",
                    "test_when_the_reader_fails_the_others_read_for_themselves_at_once",
                    "test_a_reader_whose_lock_was_taken_over_leaves_it_alone",
                    "test_redis_going_away_is_said_once_by_whichever_call_meets_it_first",
                    "test_a_redis_that_stops_answering_costs_a_call_one_second_then_none_for_5",
                    "test_a_redis_host_that_never_answers_a_connection_costs_a_call_one_second",
                    "test_a_generation_that_is_not_text_still_names_where_lists_are_kept",
                    "test_writes_at_once_are_each_announced_and_none_fails",
                    "test_a_write_not_yet_announced_keeps_its_worker_from_redis_lists",
                    "test_a_workers_background_work_is_let_go_once_done_and_stopped_on_closing",
                )
            ),
            f"{_CACHE}::test_a_listing_travels_to_a_shared_cache_and_back_unchanged",
        ),
        keywords="not v1",  # what Redis keeps is the same on either API version
    ),
    Target(
        "census_mcp/summaries/sources.py",
        only=("SourceFilter",),
        tests=(
            "tests/test_list_sources.py",
            f"{_VERSIONS}::test_sources_carry_their_group_and_list_sources_counts_and_filters_by_it",
        ),
    ),
    Target(
        "census_mcp/summaries/text.py",
        only=("PageRequest", "row_bytes", "fit_to_budget", "page_of"),
        tests=(
            "tests/test_summaries.py::test_a_page_keeps_the_largest_prefix_of_rows_that_fits_its_budget",
            "tests/test_summaries.py::test_a_page_may_spend_about_8_kb_per_25_items_within_the_cap",
            "tests/test_list_sources.py",
            "tests/test_catalog_and_cap.py::test_a_small_cap_cuts_list_pages_at_a_whole_item",
            "tests/test_catalog_and_cap.py::test_list_source_tables_search_and_offsets",
        ),
    ),
    Target(
        "census_mcp/census/api.py",
        tests=(
            f"{_VERSIONS}::test_the_version_mapping_matches_its_snapshot",
            f"{_VERSIONS}::test_every_api_path_lives_in_the_one_mapping_and_its_sandbox_twin",
            f"{_VERSIONS}::test_after_v1_retires_the_advice_no_longer_offers_it",
            f"{_VERSIONS}::test_sources_carry_their_group_and_list_sources_counts_and_filters_by_it",
            f"{_VERSIONS}::test_create_source_needs_a_group_on_v2_and_refuses_one_on_v1",
            f"{_VERSIONS}::test_a_name_taken_in_the_group_is_a_conflict_on_v2",
            f"{_VERSIONS}::test_an_operation_missing_on_v2_says_so_in_one_sentence_with_the_next_step",
            f"{_VERSIONS}::test_a_missing_source_on_a_missing_v2_route_is_still_a_missing_source",
            f"{_VERSIONS}::test_every_tool_says_v1_is_retired_and_how_to_switch",
            f"{_VERSIONS}::test_a_rejected_token_of_the_other_kind_is_named",
            f"{_VERSIONS}::test_the_sandbox_serves_one_workspace_in_both_versions",
        ),
    ),
)
