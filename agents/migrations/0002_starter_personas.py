from django.db import migrations

from agents.starter_personas import STARTER_PERSONAS


def create_starter_personas(apps, schema_editor):
    Persona = apps.get_model("agents", "Persona")
    has_default = Persona.objects.filter(is_default=True).exists()
    for data in STARTER_PERSONAS:
        fields = dict(data)
        fields["is_default"] = fields["is_default"] and not has_default
        Persona.objects.get_or_create(slug=fields.pop("slug"), defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [migrations.RunPython(create_starter_personas, migrations.RunPython.noop)]
