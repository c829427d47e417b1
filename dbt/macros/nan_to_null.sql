{#- Parquet floats may carry NaN for "not computable"; SQL comparisons treat NaN as the largest
    number, so a range test would fail on it. Marts and tests see NULL instead. -#}
{% macro nan_to_null(column) -%}
    case when isnan({{ column }}) then null else {{ column }} end
{%- endmacro %}
